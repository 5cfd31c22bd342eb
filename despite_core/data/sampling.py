"""Farthest point sampling and the per-frame cloud normalisation (numpy only; shared with ROS).

Memory traffic and numpy calls decide FPS speed (shared/ROS_ON_PIP.md): contiguous coordinate
arrays updated in place are about 10x faster than a naive (N, 3) loop that allocates every step,
and one (3, P, n) array of all the clouds of a scan takes five numpy calls a step.
"""
from __future__ import annotations

import numpy as np


def farthest_point_indices(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """Indices of ``k`` points chosen by farthest point sampling from ``points`` (N, 3).

    Deterministic: starts at index ``start``. When N < k, every point is taken once and the
    selection is then repeated cyclically (so the output always has k indices); N == 0 is an error.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"farthest point sampling expects (N, 3) points, got shape {pts.shape}")
    n = pts.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n == 0:
        raise ValueError("farthest point sampling of an empty cloud")
    if n < k:
        # Fewer points than asked: order all of them by FPS, then cycle.
        return np.resize(_fps(pts, n, start), k)
    return _fps(pts, k, start)


def _fps(pts: np.ndarray, k: int, start: int) -> np.ndarray:
    return _fps_batch([pts], k, start)[0]


def farthest_point_sample(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """``k`` points (k, 3) float32 chosen by :func:`farthest_point_indices`."""
    return np.asarray(points, dtype=np.float32)[farthest_point_indices(points, k, start)]


def normalise_frame(points: np.ndarray, k: int = 256) -> np.ndarray:
    """The model input of one frame: centred on its mean, then ``k`` points by farthest point
    sampling (deterministic start at index 0; fewer points are cycled). (N, 3) -> (k, 3) float32.

    An empty frame (person fully occluded) becomes k points at the origin. This is the
    ``normalisation`` the model bundle declares, shared by training and the ROS runtime.
    """
    pts = np.asarray(points, dtype=np.float32)
    if pts.shape[0] == 0:
        return np.zeros((k, 3), np.float32)
    centred = pts - pts.mean(axis=0, dtype=np.float64).astype(np.float32)
    return centred[farthest_point_indices(centred, k)]


def normalise_frames(frames: list[np.ndarray], k: int = 256) -> list[np.ndarray]:
    """:func:`normalise_frame` of several clouds at once, with identical results: the farthest point
    sampling loops of all clouds with at least ``k`` points run together on one padded array, so
    the loop's per-step overhead is paid once per scan instead of once per person."""
    out: list[np.ndarray | None] = [None] * len(frames)
    big = []
    centred = []
    for j, f in enumerate(frames):
        pts = np.asarray(f, dtype=np.float32)
        if pts.shape[0] < k:
            out[j] = normalise_frame(pts, k)
            continue
        big.append(j)
        centred.append(pts - pts.mean(axis=0, dtype=np.float64).astype(np.float32))
    if big:
        for j, c, idx in zip(big, centred, _fps_batch(centred, k)):
            out[j] = c[idx]
    return out


def _fps_batch(clouds: list[np.ndarray], k: int, start: int = 0) -> np.ndarray:
    """(P, k) FPS indices of each cloud (each has >= k points), all starting at index ``start``, in
    one loop: float32 squared distances summed x, then y, then z (the same arithmetic for every
    cloud, alone or together), the first maximum on ties; padding never wins (its distance is
    -inf). The coordinates are one (3, P, n) array so that a step is five numpy calls."""
    p = len(clouds)
    n = max(len(c) for c in clouds)
    xyz = np.zeros((3, p, n), np.float32)
    dist = np.full((p, n), -np.inf, np.float32)
    for r, c in enumerate(clouds):
        xyz[:, r, :len(c)] = np.asarray(c, np.float32).T
        dist[r, :len(c)] = np.inf
    tmp = np.empty((3, p, n), np.float32)
    d = np.empty((p, n), np.float32)
    out = np.empty((p, k), np.int64)
    rows = np.arange(p)
    i = np.full(p, start, np.int64)
    for j in range(k):
        out[:, j] = i
        np.subtract(xyz, xyz[:, rows, i][:, :, None], out=tmp)
        np.multiply(tmp, tmp, out=tmp)
        np.add.reduce(tmp, axis=0, out=d)               # (dx² + dy²) + dz², as one cloud at a time
        np.minimum(dist, d, out=dist)
        i = dist.argmax(axis=1)
    return out
