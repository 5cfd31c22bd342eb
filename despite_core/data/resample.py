"""Resampling of time series at new stamps (numpy only; shared with the ROS runtime).

Positions, accelerations and angular rates are interpolated linearly; orientations by slerp.
Clouds and labels cannot be interpolated: they take the nearest (or the latest earlier) frame.
"""
from __future__ import annotations

import numpy as np

from despite_core.data.imu_layout import ImuLayout
from despite_core.data.rotations import matrix_to_quat, normalize_quat, quat_to_matrix, slerp


class ResampleError(ValueError):
    """Stamps are unusable for resampling (unsorted, outside the source range, ...)."""


def check_stamps(stamps: np.ndarray, what: str = "timestamps") -> np.ndarray:
    """Return ``stamps`` as float64 after checking they are 1-D, finite and strictly increasing."""
    stamps = np.asarray(stamps, dtype=np.float64)
    if stamps.ndim != 1:
        raise ResampleError(f"{what} must be 1-D, got shape {stamps.shape}")
    if not np.all(np.isfinite(stamps)):
        raise ResampleError(f"{what} contain NaN or Inf at index {int(np.argmin(np.isfinite(stamps)))}")
    bad = np.nonzero(np.diff(stamps) <= 0)[0]
    if bad.size:
        i = int(bad[0])
        raise ResampleError(
            f"{what} are not strictly increasing: [{i}] = {stamps[i]:.6f} s, [{i + 1}] = {stamps[i + 1]:.6f} s")
    return stamps


def _bracket(src: np.ndarray, dst: np.ndarray, max_extrapolation: float) -> tuple[np.ndarray, np.ndarray]:
    """Left index and fraction of each dst stamp within src; dst outside src +- tolerance errors."""
    if src.size == 0:
        raise ResampleError("cannot resample an empty series")
    lo, hi = src[0] - max_extrapolation, src[-1] + max_extrapolation
    out = (dst < lo - 1e-9) | (dst > hi + 1e-9)
    if np.any(out):
        i = int(np.argmax(out))
        raise ResampleError(
            f"stamp {dst[i]:.6f} s lies outside the source range [{src[0]:.6f}, {src[-1]:.6f}] s")
    if src.size == 1:
        return np.zeros(dst.shape, dtype=np.int64), np.zeros(dst.shape)
    idx = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, src.size - 2)
    frac = np.clip((dst - src[idx]) / (src[idx + 1] - src[idx]), 0.0, 1.0)
    return idx, frac


def interp_linear(src_t: np.ndarray, values: np.ndarray, dst_t: np.ndarray,
                  max_extrapolation: float = 0.0) -> np.ndarray:
    """Linear interpolation of ``values`` (T, ...) given at ``src_t`` (T,) to ``dst_t`` (M,).

    Stamps beyond the ends (within ``max_extrapolation`` s) take the end values.
    """
    idx, frac = _bracket(np.asarray(src_t, np.float64), np.asarray(dst_t, np.float64), max_extrapolation)
    v = np.asarray(values)
    if v.shape[0] == 1:
        return np.repeat(v, len(idx), axis=0)
    f = frac.reshape(-1, *([1] * (v.ndim - 1)))
    out = v[idx] * (1 - f) + v[idx + 1] * f
    return out.astype(v.dtype if np.issubdtype(v.dtype, np.floating) else np.float64)


def interp_quat(src_t: np.ndarray, quats: np.ndarray, dst_t: np.ndarray,
                max_extrapolation: float = 0.0) -> np.ndarray:
    """Slerp of unit quaternions (T, ..., 4) (w, x, y, z) to ``dst_t``."""
    idx, frac = _bracket(np.asarray(src_t, np.float64), np.asarray(dst_t, np.float64), max_extrapolation)
    q = normalize_quat(quats)
    if q.shape[0] == 1:
        return np.repeat(q, len(idx), axis=0)
    f = frac.reshape(-1, *([1] * (q.ndim - 2)))
    return slerp(q[idx], q[idx + 1], f)


def interp_rotmat(src_t: np.ndarray, mats: np.ndarray, dst_t: np.ndarray,
                  max_extrapolation: float = 0.0) -> np.ndarray:
    """Slerp of rotation matrices (T, ..., 3, 3) to ``dst_t``."""
    return quat_to_matrix(interp_quat(src_t, matrix_to_quat(mats), dst_t, max_extrapolation))


def nearest_index(src_t: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """Index of the source frame nearest in time to each destination stamp (ties: earlier)."""
    src = np.asarray(src_t, np.float64)
    dst = np.asarray(dst_t, np.float64)
    right = np.clip(np.searchsorted(src, dst, side="left"), 0, src.size - 1)
    left = np.clip(right - 1, 0, src.size - 1)
    take_left = np.abs(dst - src[left]) <= np.abs(src[right] - dst)
    return np.where(take_left, left, right)


def resample_imu(src_t: np.ndarray, imu: np.ndarray, layout: ImuLayout, dst_t: np.ndarray,
                 max_extrapolation: float = 0.0) -> np.ndarray:
    """Resample IMU frames (T, sites, width) laid out as ``layout`` at ``dst_t``.

    Orientation groups (rotmat, quat) by slerp, every other group linearly.
    """
    imu = np.asarray(imu)
    out = np.empty((len(dst_t),) + imu.shape[1:], dtype=np.float32)
    for ch in layout.channels:
        sl = layout.slice(ch)
        part = imu[..., sl]
        if ch == "rotmat":
            m = interp_rotmat(src_t, part.reshape(*part.shape[:-1], 3, 3), dst_t, max_extrapolation)
            out[..., sl] = m.reshape(*m.shape[:-2], 9)
        elif ch == "quat":
            out[..., sl] = interp_quat(src_t, part, dst_t, max_extrapolation)
        else:
            out[..., sl] = interp_linear(src_t, part, dst_t, max_extrapolation)
    return out
