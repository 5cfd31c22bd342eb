"""Embed every window (stride 1 by default) of a split with a trained model, per modality, and
compute the hand-made shortcut features of the same windows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from despite_core.data.store import Store
from despite_core.data.windows import WINDOW
from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
from despite_core.train import checkpoint as ckpt
from despite_core.train.data import WindowDataset, collate, split_ids

SENSORS = ("pointcloud", "imu", "skeleton")


@dataclass
class Embedded:
    """Embeddings of every window of a split: per modality (W, D); windows ordered by sequence then start."""

    embeddings: dict[str, np.ndarray]
    seq: np.ndarray            # (W,) sequence index
    start: np.ndarray          # (W,) start frame within the sequence grid
    labels: np.ndarray         # (W,) window label (-1 ambiguous/unlabelled)
    sequence_ids: list[str]
    shortcut: dict[str, np.ndarray]   # per modality (W, F) hand-made features


def load_model(checkpoint: str, device: str = "cpu") -> tuple[DeSPITEModel, dict]:
    """A pre-training checkpoint (last.pt), or a bundle directory whose encoders are recovered from
    its ONNX parts (despite_core.train.from_bundle): a bundle's matching is measured on what it ships."""
    from pathlib import Path

    if Path(checkpoint).is_dir():
        from despite_core.train.from_bundle import checkpoint_from_bundle

        state = checkpoint_from_bundle(Path(checkpoint))
    else:
        state = ckpt.load(checkpoint, expect_kind="pretrain")
    model = DeSPITEModel(DeSPITEConfig.from_dict(state["model_config"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ckpt.CheckpointError(f"{checkpoint}: weights do not fit the model it describes ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), state


@torch.no_grad()
def embed_split(model: DeSPITEModel, store: Store, scheme: str, split: str, *, stride: int = 1,
                batch_size: int = 64, modalities: tuple[str, ...] | None = None, progress: bool = True,
                imu_layout=None) -> Embedded:
    from tqdm import tqdm

    mods = tuple(m for m in (modalities or model.modalities) if m in SENSORS and m in model.modalities)
    # Every sensor modality the store holds is loaded, for the shortcut features of all of them.
    available = tuple(m for m in SENSORS if _has(store, m))
    missing = [m for m in mods if m not in available]
    if missing:
        raise ValueError(f"{store.root}: the store lacks {missing} that the model embeds")
    ds = WindowDataset(store, split_ids(store, scheme, split), available, stride=stride, cache_dir=store.root / ".cache",
                       imu_layout=imu_layout)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    out: dict[str, list[np.ndarray]] = {m: [] for m in mods}
    device = next(model.parameters()).device
    for batch in tqdm(loader, desc="embedding", unit="batch", disable=not progress):
        for m in mods:
            out[m].append(model.encode(m, batch[m].to(device))[1].cpu().numpy())
    seq = np.array([k for k, _ in ds.windows])
    start = np.array([s for _, s in ds.windows])
    return Embedded({m: np.concatenate(v) for m, v in out.items()}, seq, start, ds.labels,
                    [g.sequence_id for g in ds.sequences], shortcut_features(ds))


def _has(store: Store, modality: str) -> bool:
    key = {"pointcloud": "points", "imu": "imu", "skeleton": "joints"}[modality]
    return all(key in store.info(s)["modalities"] for s in store.sequence_ids)


def shortcut_features(ds: WindowDataset) -> dict[str, np.ndarray]:
    """Hand-made window features a model could cheat with (no learning), per modality.

    Point clouds (from the raw, un-normalised clouds) and skeletons: mean centroid speed (m/s),
    mean height extent, mean horizontal extent, and their change over the window; IMU: motion
    energy per site (std of the acceleration magnitude) and its mean. Each is reduced to the
    same three "how much / how tall / how wide it moves" numbers where the modalities allow.
    """
    feats: dict[str, list[np.ndarray]] = {"pointcloud": [], "skeleton": [], "imu": []}
    for k, s in ds.windows:
        g = ds.sequences[k]
        sl = slice(s, s + WINDOW)
        if g.centroids is not None:
            c = g.centroids[sl]
            valid = ~np.isnan(c[:, 0])
            speed = float(np.nanmean(np.linalg.norm(np.diff(c[valid], axis=0), axis=1)) * 10) if valid.sum() > 1 else 0.0
            st = g.raw_stats[sl]
            feats["pointcloud"].append(np.array([speed, st[:, 0].mean(), st[:, 1].mean(), st[:, 0].std()]))
        if g.joints is not None:
            j = g.joints[sl]
            speed = float(np.linalg.norm(np.diff(j[:, 0], axis=0), axis=1).mean() * 10)
            h = np.ptp(j[:, :, 2], axis=1)
            w = np.hypot(*np.ptp(j[:, :, :2], axis=1).T)
            feats["skeleton"].append(np.array([speed, h.mean(), w.mean(), h.std()]))
        if g.imu is not None:
            imu = g.imu[sl].reshape(WINDOW, 4, -1)
            acc = np.linalg.norm(imu[..., 9:12], axis=-1)          # (24, 4) model layout: rotmat 9 + acc 3
            energy = acc.std(axis=0)
            feats["imu"].append(np.array([energy.mean(), *energy]))
    return {m: np.asarray(v, np.float64) for m, v in feats.items() if v}
