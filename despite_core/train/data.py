"""Training windows from a sequence store.

Each sequence is put once on the model's time grid (24-frame windows at 10 fps): clouds are
normalised per frame (centre, farthest point sampling to 256) and cached on disk, IMU is
reduced to the model's layout and resampled (slerp for orientation), joints resampled; a window
is then a slice of that grid. Augmentations follow the reference, drawn independently per
modality (clouds and joints: scale U(0.7, 1.5), translation U(+-0.3), noise sigma 0.005;
IMU: jitter sigma 0.01, scale U(0.95, 1.05)).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from despite_core.data.body_motion import body_motion, cloud_extent
from despite_core.data.imu_layout import LIPD_SITES, ImuLayout
from despite_core.data.resample import interp_linear, nearest_index, resample_imu
from despite_core.data.sampling import normalise_frame
from despite_core.data.store import Sequence, Store
from despite_core.data.windows import FPS, WINDOW, window_label, window_text

def model_imu_layout(store_layout: ImuLayout | None, gyro: bool = False) -> ImuLayout | None:
    """The IMU layout a model trains on, from the store's declared layout.

    The reference input (LIPD's four sites x (rotation matrix 9 + acceleration 3) = 48) when the
    store has those sites and channels, in the store's own conventions (frame, gravity, world), plus
    the angular rate (+ 3 per site = 60) with ``gyro`` when the store has it; otherwise the store's
    layout as it is (one phone with acc + gyro, six sites, quaternions ...).
    """
    if store_layout is None:
        return None
    if set(LIPD_SITES) <= set(store_layout.sites) and {"rotmat", "acc"} <= set(store_layout.channels):
        channels = ("rotmat", "acc", "gyro") if gyro and "gyro" in store_layout.channels else ("rotmat", "acc")
        return ImuLayout(sites=LIPD_SITES, channels=channels, acc_frame=store_layout.acc_frame,
                         gravity=store_layout.gravity, world=store_layout.world)
    return store_layout


def imu_input_stats(ds: "WindowDataset") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the IMU inputs over every frame of the dataset's
    sequences (the training data, before augmentation)."""
    frames = np.concatenate([g.imu for g in ds.sequences if g.imu is not None])
    if frames.size == 0:
        raise ValueError("no IMU frames to compute input statistics from")
    return frames.mean(0), frames.std(0)


@dataclass
class GridSequence:
    """One sequence on the model grid: M frames at ``fps`` from the first stamp."""

    sequence_id: str
    subject: str
    scene: str
    person: int
    labels: np.ndarray                  # (M,)
    text: np.ndarray                    # (M,) str
    points: np.ndarray | None           # (M, 256, 3) float32, normalised
    imu: np.ndarray | None              # (M, C) float32 in the model's layout, flattened
    joints: np.ndarray | None           # (M, 24, 3) float32
    raw_stats: np.ndarray | None = None # (M, 3): raw cloud centroid-free stats per frame, see cloud_stats
    centroids: np.ndarray | None = None # (M, 3) raw cloud centroid per frame (sensor frame), NaN when empty


def _points_cache(cache_dir: Path | None, store: Store, seq: Sequence, k: int) -> np.ndarray:
    """Normalised clouds (T, k, 3) of every source frame, from the disk cache when present."""
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(f"{store.root.resolve()}|{seq.sequence_id}|{k}|{seq.num_frames}".encode()).hexdigest()[:16]
        path = cache_dir / f"points{k}-{key}.npy"
        if path.is_file():
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (seq.num_frames, k, 3):
                return arr
    arr = np.stack([normalise_frame(p, k) for p in seq.points]) if seq.points else np.zeros((0, k, 3), np.float32)
    if path is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            tmp.replace(path)
        except OSError:
            pass  # a read-only location: the in-memory copy serves this run
    return arr


def to_grid(store: Store, seq: Sequence, modalities: tuple[str, ...], *, points_per_frame: int = 256,
            fps: float = FPS, imu_layout: ImuLayout | None = None, cache_dir: Path | None = None) -> GridSequence:
    """Resample one sequence onto the model grid (see the module docstring)."""
    ts = np.asarray(seq.timestamps, np.float64)
    m = int(np.floor((ts[-1] - ts[0]) * fps + 1e-6)) + 1
    grid = ts[0] + np.arange(m) / fps
    exact = abs(seq.fps - fps) < 1e-6 and len(ts) == m and np.allclose(ts, grid, atol=1e-3 / fps)
    near = np.arange(m) if exact else nearest_index(ts, grid)
    points = imu = joints = None
    if "pointcloud" in modalities:
        if seq.points is None:
            raise ValueError(f"sequence {seq.sequence_id!r} has no points but the model needs point clouds")
        points = _points_cache(cache_dir, store, seq, points_per_frame)[near]
    if "imu" in modalities:
        if seq.imu is None or store.imu_layout is None:
            raise ValueError(f"sequence {seq.sequence_id!r} has no IMU but the model needs it")
        imu_layout = imu_layout or model_imu_layout(store.imu_layout)
        sel = imu_layout.select(seq.imu, store.imu_layout)                     # (T, sites, width)
        sel = sel if exact else resample_imu(ts, sel, imu_layout, grid)
        imu = sel.reshape(m, -1).astype(np.float32)
    if "skeleton" in modalities:
        if seq.joints is None:
            raise ValueError(f"sequence {seq.sequence_id!r} has no joints but the model needs skeletons")
        joints = (seq.joints if exact else interp_linear(ts, seq.joints, grid)).astype(np.float32)
    text = np.asarray(seq.text)[near] if seq.text is not None else np.full(m, "", dtype="<U1")
    centroids = stats = None
    if seq.points is not None:
        centroids, stats = cloud_stats(seq.points)
        centroids, stats = centroids[near], stats[near]
    return GridSequence(seq.sequence_id, seq.subject, seq.scene, seq.person, np.asarray(seq.labels)[near],
                        text, points, imu, joints, stats, centroids)


def cloud_stats(clouds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the raw centroid (T, 3) and (height extent, horizontal extent, point count) (T, 3).

    What the normalised model input hides, and what a shortcut baseline could use.
    """
    cent = np.full((len(clouds), 3), np.nan, np.float32)
    stats = np.zeros((len(clouds), 3), np.float32)
    for i, p in enumerate(clouds):
        if len(p):
            cent[i] = p.mean(0)
            stats[i] = (*cloud_extent(p), len(p))
    return cent, stats


@dataclass(frozen=True)
class Augment:
    """The reference augmentations; ``enabled=False`` for evaluation."""

    enabled: bool = True
    scale: tuple[float, float] = (0.7, 1.5)
    translate: float = 0.3
    noise: float = 0.005
    imu_jitter: float = 0.01
    imu_scale: tuple[float, float] = (0.95, 1.05)


class WindowDataset(Dataset):
    """All windows (stride ``stride``) of the chosen sequences; items are dicts of tensors.

    Item keys: the modalities present (``pointcloud`` (24, 256, 3), ``imu`` (24, C),
    ``skeleton`` (24, 24, 3), ``text`` str), ``label`` (int, -1 ambiguous/unlabelled),
    ``text_mask`` (bool), ``index`` (int); with ``body_motion`` also ``body_motion`` (96,), the
    window's raw-cloud motion (despite_core.data.body_motion; never augmented).
    """

    def __init__(self, store: Store, sequence_ids: list[str], modalities: tuple[str, ...], *, stride: int = 1,
                 augment: Augment = Augment(enabled=False), seed: int = 0, cache_dir: Path | None = None,
                 max_windows: int | None = None, progress: bool = False, imu_layout: ImuLayout | None = None,
                 body_motion: bool = False) -> None:
        from tqdm import tqdm

        if body_motion and "pointcloud" not in modalities:
            raise ValueError("body_motion comes from the point clouds: add the pointcloud modality")
        self.modalities = tuple(modalities)
        self.body_motion = body_motion
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.class_names = store.class_names
        self.sequences: list[GridSequence] = []
        windows: list[tuple[int, int]] = []
        for sid in tqdm(sequence_ids, desc="windows", unit="seq", disable=not progress):
            g = to_grid(store, store.read(sid), self.modalities, cache_dir=cache_dir, imu_layout=imu_layout)
            n = (len(g.labels) - WINDOW) // stride + 1
            if n <= 0:
                continue
            k = len(self.sequences)
            self.sequences.append(g)
            windows.extend((k, i * stride) for i in range(n))
        if not windows:
            raise ValueError(f"no window of {WINDOW} frames in the {len(sequence_ids)} sequences given")
        if max_windows is not None and len(windows) > max_windows:
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(len(windows), max_windows, replace=False))
            windows = [windows[i] for i in keep]
        self.windows = windows
        self.labels = np.array([window_label(self.sequences[k].labels[s:s + WINDOW]) for k, s in windows])

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        """Augmentations are a deterministic function of (seed, epoch, index)."""
        self.epoch = epoch

    def window_motion(self, i: int) -> np.ndarray:
        """Window ``i``'s body motion (96,) from its raw clouds' centroids and extents (data.body_motion)."""
        k, s = self.windows[i]
        g = self.sequences[k]
        return body_motion(g.centroids[s:s + WINDOW], g.raw_stats[s:s + WINDOW, :2])

    def sequence_of(self, i: int) -> GridSequence:
        return self.sequences[self.windows[i][0]]

    def __getitem__(self, i: int) -> dict:
        k, s = self.windows[i]
        g = self.sequences[k]
        sl = slice(s, s + WINDOW)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        a = self.augment
        item: dict = {"index": i, "label": int(self.labels[i])}
        if "pointcloud" in self.modalities:
            pts = g.points[sl].copy()                                          # (24, 256, 3)
            if a.enabled:
                pts = self._geometry(pts, rng)
            item["pointcloud"] = torch.from_numpy(pts)
            if self.body_motion:
                item["body_motion"] = torch.from_numpy(self.window_motion(i))
        if "skeleton" in self.modalities:
            j = g.joints[sl] - g.joints[s, 0]                                  # centred on the first pelvis
            if a.enabled:
                j = self._geometry(j, rng)
            item["skeleton"] = torch.from_numpy(np.ascontiguousarray(j, dtype=np.float32))
        if "imu" in self.modalities:
            imu = g.imu[sl].copy()
            if a.enabled:
                imu = (imu + rng.normal(0, a.imu_jitter, imu.shape)) * rng.uniform(*a.imu_scale)
            item["imu"] = torch.from_numpy(imu.astype(np.float32))
        text = window_text(g.text[sl])
        item["text_mask"] = bool(text)
        if "text" in self.modalities:
            item["text"] = text
        return item

    def _geometry(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self.augment
        x = x + rng.uniform(-a.translate, a.translate, 3)
        x = x + rng.normal(0.0, a.noise, x.shape)
        return (x * rng.uniform(*a.scale)).astype(np.float32)


def collate(items: list[dict]) -> dict:
    """Stack tensors; keep texts as a list of strings."""
    out: dict = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], str):
            out[key] = vals
        else:
            out[key] = torch.tensor(vals)
    return out


def split_ids(store: Store, scheme: str, split: str) -> list[str]:
    """Sequence ids of a split; ``all`` means every sequence."""
    return store.sequence_ids if split == "all" else store.split(scheme, split)


def describe(ds: WindowDataset) -> dict:
    counts = np.bincount(ds.labels[ds.labels >= 0], minlength=len(ds.class_names))
    return {"windows": len(ds), "sequences": len(ds.sequences), "subjects": len({g.subject for g in ds.sequences}),
            "ambiguous_or_unlabelled": int((ds.labels < 0).sum()),
            "per_class": {n: int(c) for n, c in zip(ds.class_names, counts)}}


def dumps(obj) -> str:
    return json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
