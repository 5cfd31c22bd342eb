"""Window cutting at load time and the fixed window scoring rule (numpy only; shared with ROS).

A window is ``length`` frames at the model's ``fps`` (24 at 10 fps = 2.4 s). When a sequence was
recorded at another rate, the window's frame stamps are placed on the model's grid and every
modality is resampled there: positions, acceleration, angular rate linearly; orientations by slerp;
clouds, labels and text from the nearest source frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from despite_core.data.imu_layout import ImuLayout
from despite_core.data.resample import interp_linear, nearest_index, resample_imu
from despite_core.data.store import Sequence

WINDOW = 24
FPS = 10.0


@dataclass
class Window:
    """One window of one sequence, every modality at the same ``stamps`` (length,)."""

    sequence_id: str
    start: float                       # stamp of the first frame, s
    stamps: np.ndarray                 # (L,) float64
    labels: np.ndarray                 # (L,) int, -1 = unlabelled
    text: np.ndarray | None            # (L,) str
    points: list[np.ndarray] | None    # L arrays (N_t, 3)
    imu: np.ndarray | None             # (L, sites, width)
    joints: np.ndarray | None          # (L, J, 3)

    @property
    def label(self) -> int:
        """Majority label by the fixed scoring rule (-1 when ambiguous or unlabelled)."""
        return window_label(self.labels)


def window_label(frame_labels: np.ndarray) -> int:
    """The fixed scoring rule: the majority label of the window's frames.

    Returns -1 when the majority covers less than half of the frames (a transition: `ambiguous`)
    or when the majority is the unlabelled value -1.
    """
    labels = np.asarray(frame_labels).astype(np.int64)
    if labels.size == 0:
        return -1
    values, counts = np.unique(labels, return_counts=True)
    best = int(np.argmax(counts))
    if 2 * counts[best] < labels.size:
        return -1
    return int(values[best])


def window_text(frame_text: np.ndarray | None) -> str:
    """The window's text: the most frequent non-empty frame text, "" when none (then masked)."""
    if frame_text is None:
        return ""
    texts = [t for t in np.asarray(frame_text).tolist() if t]
    if not texts:
        return ""
    values, counts = np.unique(np.asarray(texts), return_counts=True)
    return str(values[int(np.argmax(counts))])


def window_starts(timestamps: np.ndarray, *, length: int = WINDOW, fps: float = FPS,
                  stride: int = 1) -> np.ndarray:
    """Start stamps of every window that fits in the sequence, ``stride`` model frames apart.

    The grid is anchored at the first frame. A window fits when its last stamp
    ``start + (length - 1) / fps`` is no later than the last frame (plus half a source frame of
    tolerance, so a sequence recorded exactly at ``fps`` yields T - length + 1 windows at stride 1).
    """
    if stride < 1 or length < 1 or fps <= 0:
        raise ValueError(f"need stride >= 1, length >= 1, fps > 0 (got {stride}, {length}, {fps})")
    ts = np.asarray(timestamps, np.float64)
    if ts.size == 0:
        return np.zeros(0)
    span = (length - 1) / fps
    src_dt = float(np.median(np.diff(ts))) if ts.size > 1 else 1.0 / fps
    last_start = ts[-1] - span + 0.5 * src_dt
    n = int(np.floor((last_start - ts[0]) * fps / stride + 1e-9)) + 1
    if n <= 0:
        return np.zeros(0)
    return ts[0] + np.arange(n) * stride / fps


def cut_window(seq: Sequence, start: float, *, length: int = WINDOW, fps: float = FPS,
               imu_layout: ImuLayout | None = None, modalities: tuple[str, ...] | None = None) -> Window:
    """Cut one window beginning at ``start`` (s), resampling every modality to the model grid."""
    stamps = start + np.arange(length) / fps
    src = np.asarray(seq.timestamps, np.float64)
    # Stamps may overrun the last frame by half a source frame (see window_starts): clamp, not fail.
    tol = 0.5 * (float(np.median(np.diff(src))) if src.size > 1 else 1.0 / fps)
    exact = src.size >= length and abs(seq.fps - fps) < 1e-6
    if exact:
        i0 = int(np.argmin(np.abs(src - start)))
        exact = i0 + length <= src.size and np.allclose(src[i0:i0 + length], stamps, atol=1e-3 / fps)
    near = np.arange(i0, i0 + length) if exact else nearest_index(src, stamps)
    want = set(seq.modalities if modalities is None else modalities)
    points = [seq.points[i] for i in near] if (seq.points is not None and "points" in want) else None
    imu = joints = None
    if seq.imu is not None and "imu" in want:
        if imu_layout is None:
            raise ValueError(f"sequence {seq.sequence_id!r}: cutting IMU windows needs the store's IMU layout")
        imu = seq.imu[near] if exact else resample_imu(src, seq.imu, imu_layout, stamps, tol)
    if seq.joints is not None and "joints" in want:
        joints = seq.joints[near] if exact else interp_linear(src, seq.joints, stamps, tol).astype(np.float32)
    return Window(
        sequence_id=seq.sequence_id, start=float(start), stamps=stamps,
        labels=np.asarray(seq.labels)[near],
        text=np.asarray(seq.text)[near] if seq.text is not None else None,
        points=points, imu=imu, joints=joints,
    )


def iter_windows(seq: Sequence, *, length: int = WINDOW, fps: float = FPS, stride: int = 1,
                 imu_layout: ImuLayout | None = None, modalities: tuple[str, ...] | None = None):
    """Every window of ``seq`` (see :func:`window_starts` and :func:`cut_window`)."""
    for start in window_starts(seq.timestamps, length=length, fps=fps, stride=stride):
        yield cut_window(seq, float(start), length=length, fps=fps, imu_layout=imu_layout,
                         modalities=modalities)
