"""The body's own motion over a window: what the per-frame centring of the point-cloud input removes.

The point-cloud encoder sees each frame centred on its own centroid, so a pelvis dropping onto a
seat, a body rising from a squat or falling to the floor, and travel across the room are gone from
its input. These numbers put them back beside the encoder's features (a head with ``body_motion``
input, `despite train har --body-motion`). Per frame of a window, from the person's raw
(sensor-frame) points: the centroid's height change and horizontal distance from the window's first
frame, the cloud's height extent and horizontal extent. Frames without points (occlusion) take the
nearest observed frame's values; a window with no observed frame is all zeros.

One definition for training (sequence store), evaluation and the live runtime (track buffers).
numpy only.
"""
from __future__ import annotations

import numpy as np

PER_FRAME = 4


def body_motion_dim(window: int) -> int:
    """Numbers per window: 4 per frame."""
    return PER_FRAME * window


def cloud_extent(points: np.ndarray) -> np.ndarray:
    """(height extent, horizontal extent) of one raw cloud (N, 3), m; NaN for an empty cloud."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    p = p[np.isfinite(p).all(1)]
    if not len(p):
        return np.full(2, np.nan, np.float32)
    return np.array([np.ptp(p[:, 2]), np.hypot(*np.ptp(p[:, :2], axis=0))], np.float32)


def body_motion(centroids: np.ndarray, extents: np.ndarray) -> np.ndarray:
    """(4 T,) float32 from a window's (T, 3) raw centroids and (T, 2) extents (NaN rows: no points):
    [height change (T), horizontal distance (T), height extent (T), horizontal extent (T)]."""
    c = np.asarray(centroids, np.float64)
    e = np.asarray(extents, np.float64)
    if c.ndim != 2 or c.shape[1] != 3 or e.shape != (len(c), 2) or not len(c):
        raise ValueError(f"body_motion needs (T, 3) centroids and (T, 2) extents, got {c.shape} and {e.shape}")
    ok = np.isfinite(c).all(1) & np.isfinite(e).all(1)
    if not ok.any():
        return np.zeros(PER_FRAME * len(c), np.float32)
    seen = np.nonzero(ok)[0]
    # nearest observed frame for each frame (ties: the earlier one)
    pos = np.searchsorted(seen, np.arange(len(c)))
    left = seen[np.clip(pos - 1, 0, len(seen) - 1)]
    right = seen[np.clip(pos, 0, len(seen) - 1)]
    t = np.arange(len(c))
    src = np.where(np.abs(t - left) <= np.abs(right - t), left, right)
    c, e = c[src], e[src]
    return np.concatenate([c[:, 2] - c[0, 2], np.hypot(*(c[:, :2] - c[0, :2]).T), e[:, 0], e[:, 1]]).astype(np.float32)
