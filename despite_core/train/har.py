"""`despite train har`: an activity classifier on one modality's encoder features, from scratch or
initialised from a pre-training checkpoint or bundle (fine-tuned, or frozen for a linear probe),
optionally with only a fraction of the labelled training windows, optionally keeping a fine-tuned
point-cloud encoder aligned to the init's IMU encoder (``--align-imu``). As the reference: the head sits on the
pooled features (PST: 80-d), SGD lr 0.01, momentum 0.9, weight decay 1e-4, linear warm-up then
steps at 2/3 and 6/7 of the epochs. Writes metrics.json, confusion.png and har.pt; after every
epoch log.jsonl (with the validation split's scores), curves.png and last.pt (``--resume``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from despite_core.data.store import Store
from despite_core.evaluate.har import har_metrics, plot_confusion, segment_ids
from despite_core.losses import info_nce
from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
from despite_core.train import checkpoint as ckpt
from despite_core.train.curves import plot_curves
from despite_core.train.data import Augment, WindowDataset, collate, imu_input_stats, model_imu_layout, split_ids
from despite_core.data.body_motion import body_motion_dim
from despite_core.data.windows import WINDOW
from despite_core.train.heads import FEATURE_DIM, PRESET_WITH, MotionHead, make_head


def load_init(path) -> dict:
    """The ``--init`` weights: a pre-training checkpoint file, or a bundle directory whose encoders
    (and heads) are recovered from its ONNX parts (:mod:`despite_core.train.from_bundle`)."""
    from pathlib import Path

    if Path(path).is_dir():
        from despite_core.train.from_bundle import checkpoint_from_bundle

        return checkpoint_from_bundle(Path(path))
    return ckpt.load(path, expect_kind="pretrain")


class HarModel(nn.Module):
    """encoder features -> head (linear or small MLP) -> class logits; with ``motion_dim`` the head
    also takes the window's body motion (heads.MotionHead)."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int, head: str = "linear",
                 motion_dim: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.motion_dim = motion_dim
        self.head = (MotionHead(head, feature_dim, motion_dim, num_classes) if motion_dim
                     else make_head(head, feature_dim, num_classes))

    def forward(self, x: torch.Tensor, motion: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits_and_embedding(x, motion)[0]

    def logits_and_embedding(self, x: torch.Tensor, motion: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits, the encoder's unit embedding) of a batch of windows."""
        f, e = self.encoder(x)[:2]
        if self.motion_dim:
            if motion is None:
                raise ValueError("this HAR model's head takes the window's body motion too")
            return self.head(f, motion), e
        return self.head(f), e

    def logits(self, batch: dict, modality: str) -> torch.Tensor:
        """Class logits of a collated batch (its body motion when the head takes it)."""
        return self(batch[modality], batch.get("body_motion") if self.motion_dim else None)


def init_encoder(init_state: dict, modality: str, source) -> nn.Module:
    """The ``modality`` encoder of a loaded ``--init`` (``source`` names it in errors), with its weights."""
    cfg = DeSPITEConfig.from_dict(init_state["model_config"])
    if modality not in cfg.modalities:
        raise ValueError(f"{source}: preset {cfg.preset} has no {modality} encoder")
    full = DeSPITEModel(encoder_config(cfg, modality))
    missing = full.load_state_dict({k: v for k, v in init_state["model"].items() if not k.startswith("encoders.text")},
                                   strict=False)
    if any(k.startswith(f"encoders.{modality}.") for k in missing.missing_keys):
        raise ckpt.CheckpointError(f"{source}: no weights for the {modality} encoder")
    return full.encoders[modality]


def alignment_partner(args: argparse.Namespace, init_state: dict | None) -> tuple[nn.Module, float] | None:
    """``--align-imu``: (the ``--init``'s IMU encoder, frozen in eval mode, and the temperature its
    embedding space was trained at), or None without the option."""
    w = float(getattr(args, "align_imu", 0.0) or 0.0)
    if w == 0:
        return None
    if w < 0:
        raise ValueError(f"--align-imu must be >= 0, got {w}")
    if args.modality != "pointcloud":
        raise ValueError(f"--align-imu keeps a point-cloud encoder's embedding aligned to an IMU encoder; "
                         f"--modality is {args.modality}")
    if init_state is None or args.freeze:
        raise ValueError("--align-imu fine-tunes the encoder of an --init (a checkpoint or bundle with an IMU "
                         "encoder); it needs --init and no --freeze")
    imu = init_encoder(init_state, "imu", f"--align-imu: {args.init}").eval()
    for prm in imu.parameters():
        prm.requires_grad_(False)
    return imu, ckpt.temperature_of(init_state)


def encoder_config(cfg: DeSPITEConfig, modality: str) -> DeSPITEConfig:
    """``cfg`` reduced to a text-free preset holding ``modality``: a HAR model never builds (or
    loads) the text backbone."""
    if "text" in cfg.modalities or modality not in cfg.modalities:
        return replace(cfg, preset=PRESET_WITH[modality])
    return cfg


def wants_body_motion(args: argparse.Namespace, init_state: dict | None) -> bool:
    """``--body-motion``, or an ``--init`` bundle whose head of this modality and kind takes body
    motion (it brings its input along, as it brings its IMU layout)."""
    head = None if getattr(args, "fresh_head", False) else (init_state or {}).get("heads", {}).get(args.modality)
    want = bool(getattr(args, "body_motion", False)) or (
        head is not None and head["kind"] == args.head and bool(head.get("body_motion")))
    if want and args.modality != "pointcloud":
        raise ValueError(f"--body-motion is a point-cloud input; --modality is {args.modality}")
    return want


def build(args: argparse.Namespace, num_classes: int, imu_layout=None, init_state: dict | None = None,
          class_names: list[str] | None = None) -> tuple[HarModel, DeSPITEConfig]:
    """The HAR model; ``init_state`` is the loaded ``--init`` pre-training checkpoint, if any (a
    checkpoint recovered from a bundle may bring the bundle's heads: the one of ``args.modality``
    initialises the head when its kind and ``class_names`` match; ``model.init_head`` says so)."""
    if init_state is not None:
        cfg = DeSPITEConfig.from_dict(init_state["model_config"])
        encoder = init_encoder(init_state, args.modality, args.init)
    else:
        from despite_core.train.pretrain import model_config

        cfg = model_config(argparse.Namespace(preset=PRESET_WITH[args.modality], small=args.small,
                                              imu_norm=getattr(args, "imu_norm", False)), imu_layout)
        encoder = DeSPITEModel(cfg).encoders[args.modality]
    head = None if getattr(args, "fresh_head", False) else (init_state or {}).get("heads", {}).get(args.modality)
    motion = body_motion_dim(WINDOW) if wants_body_motion(args, init_state) else 0
    model = HarModel(encoder, FEATURE_DIM[args.modality](cfg), num_classes, args.head, motion)
    model.init_head = False
    if head is not None and head["kind"] == args.head and len(head["class_names"]) == num_classes and (
            class_names is None or list(head["class_names"]) == list(class_names)) and (
            int(head.get("body_motion", 0)) == motion):
        model.head.load_state_dict(head["state"])       # the bundle's own head: fine-tuning starts from the model
        model.init_head = True
    if args.freeze:
        for prm in encoder.parameters():
            prm.requires_grad_(False)
    return model, cfg


def motion_stats(ds: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-number mean and standard deviation of the body motion of every window of ``ds``."""
    m = np.stack([ds.window_motion(i) for i in range(len(ds))])
    return m.mean(0), m.std(0)


@torch.no_grad()
def predict(model: HarModel, ds, modality: str, batch_size: int = 64) -> np.ndarray:
    model.eval()
    # its own generator: a DataLoader draws its base seed from the one it has, and scoring must not
    # move torch's global RNG (which training's dropout uses): validating changes no training step
    out = [torch.softmax(model.logits(b, modality), 1).numpy()
           for b in DataLoader(ds, batch_size=batch_size, collate_fn=collate, generator=torch.Generator())]
    return np.concatenate(out)


RESUME_MUST_MATCH = ("store", "modality", "init", "freeze", "head", "fresh_head", "body_motion", "align_imu",
                     "label_fraction", "split_scheme", "train_split", "epochs", "batch_size", "lr", "encoder_lr",
                     "warmup_epochs", "stride", "small", "imu_norm", "imu_gyro", "seed", "loss_classes", "val_split",
                     "threads")


def resume(path, args: argparse.Namespace, model: HarModel, optim: torch.optim.Optimizer,
           order: torch.Generator) -> tuple[list, int, int]:
    """``--resume``: restore model, optimiser, batch order and torch's random state from the run's
    ``last.pt``; (its per-epoch log, the step, the epoch to start at). The options that decide the
    steps must be the interrupted run's."""
    if not path.is_file():
        raise ValueError(f"--resume: {path} does not exist (it is written after every epoch; start without --resume)")
    state = ckpt.load(path, expect_kind="har_resume")
    was = state["args"]
    now = ckpt.args_dict(args)
    differ = [k for k in RESUME_MUST_MATCH if was.get(k) != now.get(k)]
    if differ:
        raise ValueError(f"--resume: {path} was trained with other options: "
                         + ", ".join(f"--{k.replace('_', '-')} {was.get(k)!r} (now {now.get(k)!r})" for k in differ))
    model.load_state_dict(state["model"])
    optim.load_state_dict(state["optimizer"])
    order.set_state(state["order"])
    torch.set_rng_state(state["torch_rng"])
    return list(state["log"]), int(state["step"]), int(state["epoch"])


def validation_windows(args: argparse.Namespace, store: Store, layout, motion: bool) -> WindowDataset | None:
    """``--val-split``'s windows (None for '' or for auto on a scheme without a 'val' split)."""
    name = getattr(args, "val_split", "")
    if name == "auto":
        # every sequence trains (--train-split all), or the scheme has no 'val': nothing to validate on
        if args.train_split == "all" or "val" not in store.split_names(args.split_scheme):
            return None
        ids = store.split(args.split_scheme, "val")
        if not ids:
            return None
    elif not name:
        return None
    else:
        ids = split_ids(store, args.split_scheme, name)
        if not ids:
            raise ValueError(f"--val-split {name}: the split has no sequence")
    shared = set(ids) & set(split_ids(store, args.split_scheme, args.train_split))
    if shared:
        print(f"warning: --val-split {name} shares {len(shared)} of its {len(ids)} sequences with --train-split "
              f"{args.train_split}: its curve measures fitting, not generalisation", file=sys.stderr)
    return WindowDataset(store, ids, (args.modality,), stride=max(args.eval_stride, 4), cache_dir=store.root / ".cache",
                         imu_layout=layout, body_motion=motion)


def loss_mask(choice: str, init_head: bool, labels: np.ndarray, n_classes: int) -> torch.Tensor | None:
    """The classes the cross-entropy normalises over (``--loss-classes``): None for all, else a bool
    row that keeps the classes with at least one training window; logits of the others get no
    gradient, so a head initialised from a bundle keeps them as they were."""
    if choice not in ("auto", "all", "seen"):
        raise ValueError(f"--loss-classes must be auto, all or seen, got {choice!r}")
    if choice == "all" or (choice == "auto" and not init_head):
        return None
    seen = np.zeros(n_classes, bool)
    seen[labels[labels >= 0]] = True
    if not seen.any():
        raise ValueError("--loss-classes seen: no labelled training window")
    return torch.from_numpy(seen)


def param_groups(model: HarModel, lr: float, encoder_lr: float | None) -> list[dict]:
    """SGD parameter groups: the head at ``lr``, the encoder at ``encoder_lr`` (``lr`` when None);
    frozen parameters left out. Each group's ``peak_lr`` is what the schedule scales."""
    if lr < 0 or (encoder_lr is not None and encoder_lr < 0):
        raise ValueError(f"learning rates must be >= 0, got --lr {lr}, --encoder-lr {encoder_lr}")
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    head = [p for p in model.head.parameters() if p.requires_grad]
    groups = [{"params": head, "peak_lr": lr, "lr": lr}]
    if enc:
        e = lr if encoder_lr is None else encoder_lr
        groups.append({"params": enc, "peak_lr": e, "lr": e})
    return groups


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy over the classes of ``mask`` (all when None): the others' logits get no gradient."""
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return nn.functional.cross_entropy(logits, labels)


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    if getattr(args, "fresh_head", False) and args.init is None:
        raise ValueError("--fresh-head starts a new head instead of an --init bundle's: give --init")
    if not 0 < args.label_fraction <= 1:
        raise ValueError(f"--label-fraction must be in (0, 1], got {args.label_fraction}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    store = Store(args.store)
    cache = args.store / ".cache"
    layout = model_imu_layout(store.imu_layout, gyro=getattr(args, "imu_gyro", False))
    init_state = load_init(args.init) if args.init is not None else None
    if init_state is not None:
        layout = ckpt.imu_layout_of(init_state) or layout
    motion = wants_body_motion(args, init_state)
    partner = alignment_partner(args, init_state)
    mods = (args.modality, "imu") if partner is not None else (args.modality,)
    train_all = WindowDataset(store, split_ids(store, args.split_scheme, args.train_split), mods, stride=args.stride,
                              augment=Augment(), seed=args.seed, cache_dir=cache, progress=not args.quiet,
                              imu_layout=layout, body_motion=motion)
    labelled = np.nonzero(train_all.labels >= 0)[0]
    rng = np.random.default_rng(args.seed)
    keep = np.sort(rng.choice(labelled, max(1, int(round(args.label_fraction * len(labelled)))), replace=False))
    train = Subset(train_all, keep.tolist())
    test_store = store
    if getattr(args, "test_store", None) is not None:
        test_store = Store(args.test_store)
        if list(test_store.class_names) != list(store.class_names):
            raise ValueError(f"--test-store {args.test_store}: class names {list(test_store.class_names)} differ from "
                             f"--store's {list(store.class_names)}")
    test = WindowDataset(test_store, split_ids(test_store, args.split_scheme, args.test_split), (args.modality,),
                         stride=args.eval_stride, cache_dir=test_store.root / ".cache", imu_layout=layout,
                         body_motion=motion)
    val = validation_windows(args, store, layout, motion)
    model, cfg = build(args, len(store.class_names), layout, init_state, list(store.class_names))
    if args.modality == "imu" and init_state is None and cfg.imu.input_norm:
        model.encoder.set_input_stats(*imu_input_stats(train_all))
    if model.motion_dim and not model.init_head:
        model.head.set_motion_stats(*motion_stats(train_all))
    mask = loss_mask(args.loss_classes, model.init_head, train_all.labels[keep], len(store.class_names))
    optim = torch.optim.SGD(param_groups(model, args.lr, args.encoder_lr), lr=args.lr, momentum=0.9,
                            weight_decay=1e-4)
    order = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=len(train) > args.batch_size,
                        collate_fn=collate, generator=order)
    steps = max(len(loader), 1)
    warm = (args.warmup_epochs if args.warmup_epochs is not None else max(1, round(args.epochs / 3.5))) * steps
    milestones = [int(args.epochs * 4 / 7) * steps, int(args.epochs * 6 / 7) * steps]

    def lr_at(step: int) -> float:
        f = 1e-5 + (1 - 1e-5) * min(1.0, step / max(warm, 1))
        return f * (0.1 ** sum(step >= m for m in milestones))

    args.out.mkdir(parents=True, exist_ok=True)
    log, step, start = [], 0, 0
    resume_path = args.out / "last.pt"
    if getattr(args, "resume", False):
        log, step, start = resume(resume_path, args, model, optim, order)
    log_path = args.out / "log.jsonl"
    log_path.write_text("".join(json.dumps(r) + "\n" for r in log))
    for epoch in range(start, args.epochs):
        train_all.set_epoch(epoch)
        model.train()
        if args.freeze:
            model.encoder.eval()
        t0, total, total_align, n = time.perf_counter(), 0.0, 0.0, 0
        for batch in tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=args.quiet):
            for g in optim.param_groups:
                g["lr"] = g["peak_lr"] * lr_at(step)
            logits, emb = model.logits_and_embedding(batch[args.modality],
                                                     batch.get("body_motion") if model.motion_dim else None)
            loss = masked_cross_entropy(logits, batch["label"], mask)
            total += loss.item() * len(batch["label"])
            if partner is not None and len(emb) > 1:
                with torch.no_grad():
                    target = partner[0](batch["imu"])[1]
                align = info_nce(emb, target, partner[1])
                total_align += align.item() * len(batch["label"])
                loss = loss + args.align_imu * align
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            n += len(batch["label"])
        record = {"epoch": epoch + 1, "loss": round(total / max(n, 1), 5), "seconds": round(time.perf_counter() - t0, 2)}
        if partner is not None:
            record["align_loss"] = round(total_align / max(n, 1), 5)
        if val is not None:
            vm = har_metrics(predict(model, val, args.modality), val.labels, store.class_names)
            record.update(val_accuracy=round(vm["accuracy"], 4), val_macro_f1=round(vm["macro_f1"], 4))
        log.append(record)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        plot_curves(log, args.out / "curves.png", f"{args.modality} HAR, {args.out.name}")
        # after every epoch, everything a resumed run needs to take the same next steps as this one
        ckpt.save(ckpt.make("har_resume", model, cfg, store, epoch + 1, args, imu_layout=layout, optimizer=optim,
                            step=step, log=log, order=order.get_state(), torch_rng=torch.get_rng_state()), resume_path)
    scores = predict(model, test, args.modality)
    seq = np.array([k for k, _ in test.windows])
    metrics = har_metrics(scores, test.labels, store.class_names, groups=segment_ids(seq, test.labels))
    result = {"modality": args.modality, "init": str(args.init) if args.init else "scratch", "freeze": args.freeze,
              "head": args.head, "body_motion": model.motion_dim, "init_head": model.init_head, "lr": args.lr,
              "encoder_lr": optim.param_groups[1]["peak_lr"] if len(optim.param_groups) > 1 else None,
              "align_imu": float(getattr(args, "align_imu", 0.0) or 0.0),
              "loss_classes": "all" if mask is None else [n for n, m in zip(store.class_names, mask.tolist()) if m],
              "test_store": str(test_store.root),
              "label_fraction": args.label_fraction, "train_windows": len(train), "test_windows": len(test),
              "epochs": args.epochs, "log": log, "test": metrics}
    (args.out / "metrics.json").write_text(json.dumps(result, indent=1))
    plot_confusion(metrics, str(args.out / "confusion.png"),
                   f"{args.modality} HAR ({result['init'] if args.init is None else 'pre-trained ' + cfg.preset}), "
                   f"acc {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    ckpt.save(ckpt.make("har", model, cfg, store, args.epochs, args, imu_layout=layout, modality=args.modality,
                        head=args.head, body_motion=model.motion_dim), args.out / "har.pt")
    return result
