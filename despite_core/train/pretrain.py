"""`despite train pretrain`: contrastive pre-training of a modality subset (DeSPITE, DeSPIE, ...).

One process, or many under `torchrun --nproc_per_node=N` (DistributedDataParallel; gloo on CPU,
NCCL on GPU; negatives gathered across ranks). Adam at lr 1e-4, the reference augmentations,
checkpoints every K epochs with resume, a JSON line per epoch in ``log.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from despite_core.data.store import Store
from despite_core.losses import DeSPITELoss, LossConfig
from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
from despite_core.train.curves import plot_curves
from despite_core.models.imu import ImuEncoderConfig
from despite_core.presets import PRESETS, loss_pairs
from despite_core.train.options import pretrain_arguments as add_arguments  # noqa: F401  (the entry point)
from despite_core.train import checkpoint as ckpt
from despite_core.train.data import (Augment, WindowDataset, collate, describe, imu_input_stats, model_imu_layout,
                                     split_ids)
from despite_core.train.distributed import DistInfo, all_reduce_mean, cleanup, ranks_in_sync, setup


def model_config(args: argparse.Namespace, imu_layout=None) -> DeSPITEConfig:
    """The model for a preset; the IMU encoder's input width follows ``imu_layout`` (default 48)."""
    imu = ImuEncoderConfig.for_layout(imu_layout) if imu_layout is not None else ImuEncoderConfig()
    if getattr(args, "imu_norm", False):
        from dataclasses import replace as _replace

        imu = _replace(imu, input_norm=True)
    cfg = DeSPITEConfig(preset=args.preset, imu=imu)
    if args.small:
        from dataclasses import replace

        cfg = replace(cfg, pointcloud=replace(cfg.pointcloud, depth=2, mlp_dim=256),
                      skeleton=replace(cfg.skeleton, layers=2, latent=256, ff=512),
                      imu=replace(cfg.imu, hidden=256))
    return cfg


def run(args: argparse.Namespace) -> dict:
    if args.list_presets:
        for name in PRESETS:
            print(f"{name:<8} {', '.join(PRESETS[name]):<40} loss: {', '.join(loss_pairs(name))}")
        return {}
    if args.store is None or args.out is None:
        raise ValueError("despite train pretrain needs --store and --out")
    info = setup(args.device)
    try:
        return _train(args, info)
    finally:
        cleanup()


def _train(args: argparse.Namespace, info: DistInfo) -> dict:
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.batch_size % info.world_size:
        raise ValueError(f"--batch-size {args.batch_size} is not divisible by the {info.world_size} ranks")
    store = Store(args.store)
    layout = model_imu_layout(store.imu_layout, gyro=getattr(args, "imu_gyro", False))
    cfg = model_config(args, layout)
    mods = cfg.modalities
    if "imu" in mods and layout is None:
        raise ValueError(f"{args.store}: preset {args.preset} needs IMU but the store declares no IMU layout")
    cache = args.store / ".cache"
    train_ds = WindowDataset(store, split_ids(store, args.split_scheme, args.train_split), mods, stride=args.stride,
                             augment=Augment(), seed=args.seed, cache_dir=cache, max_windows=args.max_windows,
                             progress=info.main and not args.quiet, imu_layout=layout)
    val_ds = None
    if args.val_split:
        ids = split_ids(store, args.split_scheme, args.val_split)
        if ids:
            val_ds = WindowDataset(store, ids, mods, stride=max(args.stride, 4), cache_dir=cache, imu_layout=layout)
    local_bs = args.batch_size // info.world_size
    if len(train_ds) < args.batch_size:
        raise ValueError(f"{len(train_ds)} training windows is fewer than one batch of {args.batch_size}")
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=args.seed, drop_last=True) if info.enabled else None
    order = torch.Generator()            # reseeded every epoch: a resumed run sees the same batches
    loader = DataLoader(train_ds, batch_size=local_bs, shuffle=sampler is None, sampler=sampler, drop_last=True,
                        collate_fn=collate, num_workers=args.workers, generator=order)
    model = DeSPITEModel(cfg)
    if "imu" in mods and cfg.imu.input_norm:     # the same statistics on every rank (same data); resume restores them
        model.encoders["imu"].set_input_stats(*imu_input_stats(train_ds))
    model = model.to(info.device)
    loss_fn = DeSPITELoss(LossConfig(temperature=args.temperature, learnable_temperature=args.learnable_temperature)).to(info.device)
    params = list(model.parameters()) + list(loss_fn.parameters())
    optim = torch.optim.Adam(params, lr=args.lr)
    start_epoch = 0
    out = args.out
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        state = ckpt.load(out / "last.pt", expect_kind="pretrain")
        if DeSPITEConfig.from_dict(state["model_config"]) != cfg:
            raise ValueError(f"{out / 'last.pt'}: its model configuration differs from the one asked for")
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optim.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
    net = DistributedDataParallel(model) if info.enabled else model
    if info.main:
        (out / "config.json").write_text(json.dumps({"model": cfg.to_dict(), "args": ckpt.args_dict(args),
                                                    "train": describe(train_ds), "world_size": info.world_size}, indent=1))
    log_path = out / "log.jsonl"
    history = []
    for epoch in range(start_epoch, args.epochs):
        train_ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        # Every random draw of an epoch (batch order, dropout) follows (seed, epoch): resuming from
        # epoch k's checkpoint takes the same steps as the uninterrupted run.
        order.manual_seed(args.seed * 100_003 + epoch)
        torch.manual_seed(args.seed * 100_003 + epoch + 1)
        before = torch.cat([p.detach().flatten() for p in params]).clone()
        net.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", disable=not info.main or args.quiet)
        for batch in bar:
            emb = net(_inputs(batch, mods, info))
            total, terms = loss_fn(emb, batch["text_mask"].to(info.device))
            optim.zero_grad(set_to_none=True)
            total.backward()
            optim.step()
            steps += 1
            sums["loss"] = sums.get("loss", 0.0) + total.item()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            bar.set_postfix(loss=f"{total.item():.3f}")
        seconds = time.perf_counter() - t0
        # how far the epoch moved the weights (L2 over every parameter): 0 means nothing was learned
        update = float((torch.cat([p.detach().flatten() for p in params]) - before).norm())
        record = {"epoch": epoch + 1, "seconds": round(seconds, 2),
                  "windows_per_s": round(steps * args.batch_size / max(seconds, 1e-9), 1),
                  **{k: round(all_reduce_mean(v / max(steps, 1), info), 5) for k, v in sums.items()},
                  "update_norm": round(update, 6)}
        if info.enabled:
            record["world_size"] = info.world_size
            record["ranks_in_sync"] = ranks_in_sync(model, info)
            # identical steps on every rank: each rank's own update norm, gathered
            norms = [torch.zeros(1, device=info.device) for _ in range(info.world_size)]
            torch.distributed.all_gather(norms, torch.tensor([update], device=info.device))
            record["rank_update_norms"] = [round(float(n), 6) for n in norms]
        if val_ds is not None:
            record["val_loss"] = round(all_reduce_mean(validation_loss(model, loss_fn, val_ds, local_bs, info), info), 5)
        history.append(record)
        if info.main:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            plot_curves([json.loads(x) for x in log_path.read_text().splitlines()], out / "curves.png",
                        f"pre-training {cfg.preset}, {out.name}")
            last = epoch + 1 == args.epochs
            if last or (epoch + 1) % args.checkpoint_every == 0:
                state = ckpt.make("pretrain", model, cfg, store, epoch + 1, args, imu_layout=layout, optimizer=optim,
                                  loss=loss_fn)
                ckpt.save(state, out / f"checkpoint-epoch{epoch + 1:04d}.pt")
                ckpt.save(state, out / "last.pt")
    return {"out": str(out), "epochs": args.epochs, "history": history, "train": describe(train_ds)}


def _inputs(batch: dict, modalities, info: DistInfo) -> dict:
    """The model's inputs from a collated batch: tensors to the device, texts as they are."""
    return {m: (batch[m].to(info.device) if m != "text" else batch[m]) for m in modalities}


@torch.no_grad()
def validation_loss(model: DeSPITEModel, loss_fn: DeSPITELoss, ds: WindowDataset, batch_size: int, info: DistInfo) -> float:
    model.eval()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    total, n = 0.0, 0
    for batch in loader:
        if len(batch["index"]) < 2:
            continue
        value, _ = loss_fn(model(_inputs(batch, model.modalities, info)), batch["text_mask"].to(info.device))
        total += float(value)
        n += 1
    return total / max(n, 1) if n else math.nan


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m despite_core.train.pretrain` (torchrun-friendly)."""
    parser = argparse.ArgumentParser(prog="despite train pretrain", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
