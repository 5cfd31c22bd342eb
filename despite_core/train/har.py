"""`despite train har`: an activity classifier on one modality's encoder features, from scratch or
initialised from a pre-training checkpoint (fine-tuned, or frozen for a linear probe), optionally
with only a fraction of the labelled training windows. As the reference: the head sits on the
pooled features (PST: 80-d), SGD lr 0.01, momentum 0.9, weight decay 1e-4, linear warm-up then
steps at 2/3 and 6/7 of the epochs. Writes metrics.json, confusion.png and har.pt.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from despite_core.data.store import Store
from despite_core.evaluate.har import har_metrics, plot_confusion, segment_ids
from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
from despite_core.train import checkpoint as ckpt
from despite_core.train.data import Augment, WindowDataset, collate, imu_input_stats, model_imu_layout, split_ids
from despite_core.train.heads import FEATURE_DIM, PRESET_WITH, make_head


def load_init(path) -> dict:
    """The ``--init`` weights: a pre-training checkpoint file, or a bundle directory whose encoders
    (and heads) are recovered from its ONNX parts (:mod:`despite_core.train.from_bundle`)."""
    from pathlib import Path

    if Path(path).is_dir():
        from despite_core.train.from_bundle import checkpoint_from_bundle

        return checkpoint_from_bundle(Path(path))
    return ckpt.load(path, expect_kind="pretrain")


class HarModel(nn.Module):
    """encoder features -> head (linear or small MLP) -> class logits."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int, head: str = "linear") -> None:
        super().__init__()
        self.encoder = encoder
        self.head = make_head(head, feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[0])


def encoder_config(cfg: DeSPITEConfig, modality: str) -> DeSPITEConfig:
    """``cfg`` reduced to a text-free preset holding ``modality``: a HAR model never builds (or
    loads) the text backbone."""
    if "text" in cfg.modalities or modality not in cfg.modalities:
        return replace(cfg, preset=PRESET_WITH[modality])
    return cfg


def build(args: argparse.Namespace, num_classes: int, imu_layout=None, init_state: dict | None = None,
          class_names: list[str] | None = None) -> tuple[HarModel, DeSPITEConfig]:
    """The HAR model; ``init_state`` is the loaded ``--init`` pre-training checkpoint, if any (a
    checkpoint recovered from a bundle may bring the bundle's heads: the one of ``args.modality``
    initialises the head when its kind and ``class_names`` match; ``model.init_head`` says so)."""
    if init_state is not None:
        state = init_state
        cfg = DeSPITEConfig.from_dict(state["model_config"])
        if args.modality not in cfg.modalities:
            raise ValueError(f"{args.init}: preset {cfg.preset} has no {args.modality} encoder")
        full = DeSPITEModel(encoder_config(cfg, args.modality))
        missing = full.load_state_dict({k: v for k, v in state["model"].items() if not k.startswith("encoders.text")},
                                       strict=False)
        if any(k.startswith(f"encoders.{args.modality}.") for k in missing.missing_keys):
            raise ckpt.CheckpointError(f"{args.init}: no weights for the {args.modality} encoder")
    else:
        from despite_core.train.pretrain import model_config

        cfg = model_config(argparse.Namespace(preset=PRESET_WITH[args.modality], small=args.small,
                                              imu_norm=getattr(args, "imu_norm", False)), imu_layout)
        full = DeSPITEModel(cfg)
    encoder = full.encoders[args.modality]
    model = HarModel(encoder, FEATURE_DIM[args.modality](cfg), num_classes, args.head)
    head = (init_state or {}).get("heads", {}).get(args.modality)
    model.init_head = False
    if head is not None and head["kind"] == args.head and len(head["class_names"]) == num_classes and (
            class_names is None or list(head["class_names"]) == list(class_names)):
        model.head.load_state_dict(head["state"])       # the bundle's own head: fine-tuning starts from the model
        model.init_head = True
    if args.freeze:
        for prm in encoder.parameters():
            prm.requires_grad_(False)
    return model, cfg


@torch.no_grad()
def predict(model: HarModel, ds, modality: str, batch_size: int = 64) -> np.ndarray:
    model.eval()
    out = [torch.softmax(model(b[modality]), 1).numpy() for b in DataLoader(ds, batch_size=batch_size, collate_fn=collate)]
    return np.concatenate(out)


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

    if not 0 < args.label_fraction <= 1:
        raise ValueError(f"--label-fraction must be in (0, 1], got {args.label_fraction}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    store = Store(args.store)
    cache = args.store / ".cache"
    mods = (args.modality,)
    layout = model_imu_layout(store.imu_layout, gyro=getattr(args, "imu_gyro", False))
    init_state = load_init(args.init) if args.init is not None else None
    if init_state is not None:
        layout = ckpt.imu_layout_of(init_state) or layout
    train_all = WindowDataset(store, split_ids(store, args.split_scheme, args.train_split), mods, stride=args.stride,
                              augment=Augment(), seed=args.seed, cache_dir=cache, progress=not args.quiet,
                              imu_layout=layout)
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
    test = WindowDataset(test_store, split_ids(test_store, args.split_scheme, args.test_split), mods,
                         stride=args.eval_stride, cache_dir=test_store.root / ".cache", imu_layout=layout)
    model, cfg = build(args, len(store.class_names), layout, init_state, list(store.class_names))
    if args.modality == "imu" and init_state is None and cfg.imu.input_norm:
        model.encoder.set_input_stats(*imu_input_stats(train_all))
    mask = loss_mask(args.loss_classes, model.init_head, train_all.labels[keep], len(store.class_names))
    optim = torch.optim.SGD(param_groups(model, args.lr, args.encoder_lr), lr=args.lr, momentum=0.9,
                            weight_decay=1e-4)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=len(train) > args.batch_size,
                        collate_fn=collate, generator=torch.Generator().manual_seed(args.seed))
    steps = max(len(loader), 1)
    warm = (args.warmup_epochs if args.warmup_epochs is not None else max(1, round(args.epochs / 3.5))) * steps
    milestones = [int(args.epochs * 4 / 7) * steps, int(args.epochs * 6 / 7) * steps]

    def lr_at(step: int) -> float:
        f = 1e-5 + (1 - 1e-5) * min(1.0, step / max(warm, 1))
        return f * (0.1 ** sum(step >= m for m in milestones))

    args.out.mkdir(parents=True, exist_ok=True)
    log = []
    step = 0
    for epoch in range(args.epochs):
        train_all.set_epoch(epoch)
        model.train()
        if args.freeze:
            model.encoder.eval()
        t0, total, n = time.perf_counter(), 0.0, 0
        for batch in tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=args.quiet):
            for g in optim.param_groups:
                g["lr"] = g["peak_lr"] * lr_at(step)
            loss = masked_cross_entropy(model(batch[args.modality]), batch["label"], mask)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            total += loss.item() * len(batch["label"])
            n += len(batch["label"])
        log.append({"epoch": epoch + 1, "loss": round(total / max(n, 1), 5), "seconds": round(time.perf_counter() - t0, 2)})
    scores = predict(model, test, args.modality)
    seq = np.array([k for k, _ in test.windows])
    metrics = har_metrics(scores, test.labels, store.class_names, groups=segment_ids(seq, test.labels))
    result = {"modality": args.modality, "init": str(args.init) if args.init else "scratch", "freeze": args.freeze,
              "head": args.head, "init_head": model.init_head, "lr": args.lr,
              "encoder_lr": optim.param_groups[1]["peak_lr"] if len(optim.param_groups) > 1 else None,
              "loss_classes": "all" if mask is None else [n for n, m in zip(store.class_names, mask.tolist()) if m],
              "test_store": str(test_store.root),
              "label_fraction": args.label_fraction, "train_windows": len(train), "test_windows": len(test),
              "epochs": args.epochs, "log": log, "test": metrics}
    (args.out / "metrics.json").write_text(json.dumps(result, indent=1))
    plot_confusion(metrics, str(args.out / "confusion.png"),
                   f"{args.modality} HAR ({result['init'] if args.init is None else 'pre-trained ' + cfg.preset}), "
                   f"acc {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    ckpt.save(ckpt.make("har", model, cfg, store, args.epochs, args, imu_layout=layout, modality=args.modality,
                        head=args.head), args.out / "har.pt")
    return result
