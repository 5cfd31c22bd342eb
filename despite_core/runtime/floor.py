"""The floor as a plane in the sensor frame, found by RANSAC on one scan: heights above it and
horizontal coordinates in it, whatever the LiDAR's tilt or mounting height.

A mounted LiDAR is rarely level (wall mounts tilt down a few degrees, a robot pitches), so "height =
z - constant" puts the far floor tens of centimetres above the near floor and merges everything
into one cluster. Perception therefore works in the floor's own frame: ``heights`` are distances
above the plane, ``level`` gives coordinates along it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FloorPlane:
    """``height(p) = p @ normal + offset`` (m), normal pointing up (unit, sensor frame); ``offset``
    is the sensor's own height above the floor."""

    normal: np.ndarray            # (3,)
    offset: float

    @classmethod
    def horizontal(cls, ground_z: float) -> "FloorPlane":
        """A level floor at ``ground_z`` in the sensor frame (the sensor ``-ground_z`` above it)."""
        return cls(np.array([0.0, 0.0, 1.0]), -float(ground_z))

    @property
    def basis(self) -> np.ndarray:
        """(3, 2): two unit vectors along the floor, the first as close as possible to the sensor's x."""
        n = self.normal
        e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
        e1 /= np.linalg.norm(e1)
        return np.stack([e1, np.cross(n, e1)], 1)

    @property
    def tilt_deg(self) -> float:
        """Angle between the floor normal and the sensor's z axis."""
        return math.degrees(math.acos(min(1.0, abs(float(self.normal[2])))))

    def heights(self, xyz: np.ndarray) -> np.ndarray:
        """(N,) metres above the floor."""
        return (xyz @ self.normal.astype(np.float32) + np.float32(self.offset)).astype(np.float32, copy=False)

    def level(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 2) coordinates along the floor (m), origin below the sensor."""
        return (xyz @ self.basis.astype(np.float32)).astype(np.float32, copy=False)


def fit_floor(xyz: np.ndarray, *, max_tilt_deg: float = 25.0, inlier: float = 0.05, iterations: int = 128,
              sectors: int = 180, min_inliers: int = 40, seed: int = 0) -> FloorPlane | None:
    """The floor plane of one scan (sensor frame), or None when no plane qualifies.

    RANSAC, deterministic for the same scan. Candidate triples are drawn from the lowest return of
    each azimuth sector (where the floor is in view that return is on it, even on a 16-beam LiDAR
    whose floor is a few rings far away). A candidate's normal must be within ``max_tilt_deg`` of
    the sensor's z, the sensor at least 0.3 m above it and almost nothing more than 0.15 m below
    it (a table top has the floor under it). Candidates are scored on a small subsample, the best
    eight again on a large one: inliers (``inlier`` m) less four times the returns more than
    ``inlier`` below (the floor is the lowest surface: a plane tilted through a few floor returns
    and the foot of the walls has returns under it). The winner is refined by least squares.
    """
    pts = np.asarray(xyz)
    pts = pts[:: max(1, len(pts) // 20000)].astype(np.float64)            # dense scans: 20k returns are plenty
    pts = pts[np.isfinite(pts).all(1)]
    horiz = np.hypot(pts[:, 0], pts[:, 1])
    keep = (horiz > 0.8) & (horiz < 25.0)
    pts, horiz = pts[keep], horiz[keep]
    if len(pts) < min_inliers:
        return None
    rng = np.random.default_rng(seed)
    sector = ((np.arctan2(pts[:, 1], pts[:, 0]) + math.pi) * (sectors / (2 * math.pi))).astype(np.int64) % sectors
    order = np.lexsort((pts[:, 2], sector))                               # by sector, then height
    first = np.flatnonzero(np.r_[True, sector[order][1:] != sector[order][:-1]])
    pool = pts[order[first]]                                               # lowest return per sector
    if len(pool) < 3:
        return None
    tri = pool[rng.integers(0, len(pool), (iterations, 3))]               # (I, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])       # (I, 3)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-9
    normals[ok] /= norm[ok, None]
    normals *= np.where(normals[:, 2:3] < 0, -1.0, 1.0)                    # pointing up (sensor z)
    offsets = -np.einsum("ij,ij->i", normals, tri[:, 0])                   # sensor height above each plane
    ok &= (normals[:, 2] >= math.cos(math.radians(max_tilt_deg))) & (offsets >= 0.3)
    if not ok.any():
        return None
    normals, offsets = normals[ok], offsets[ok]

    def score(sample: np.ndarray, n: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = sample @ n.T + o                                               # (S, I) signed heights
        inliers = (np.abs(d) < inlier).sum(0)
        s = inliers - 4 * (d < -inlier).sum(0)
        return np.where((d < -0.15).sum(0) <= 0.01 * len(sample), s, -len(sample)), inliers

    small = pts[rng.choice(len(pts), min(len(pts), 600), replace=False)]
    coarse, _ = score(small, normals, offsets)
    top = np.argsort(-coarse)[:8]
    large = pts[rng.choice(len(pts), min(len(pts), 6000), replace=False)]
    fine, inliers = score(large, normals[top], offsets[top])
    best = int(np.argmax(fine))
    if fine[best] < 0 or inliers[best] < min_inliers:
        return None
    n, o = normals[top[best]], offsets[top[best]]
    q = large[np.abs(large @ n + o) < inlier]
    centre = q.mean(0)
    normal = np.linalg.svd(q - centre, full_matrices=False)[2][-1]
    normal = normal if normal[2] > 0 else -normal
    if normal[2] < math.cos(math.radians(max_tilt_deg)):
        return None
    return FloorPlane(normal, float(-normal @ centre))
