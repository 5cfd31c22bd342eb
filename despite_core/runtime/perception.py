"""The perception front end: from a raw LiDAR scan to per-person point sets with stable track ids.
ROS-free (numpy + scipy); the har_node and bag-eval call :meth:`Perception.process` per scan.

Pipeline, all in the sensor frame (x forward, z up):
1. Region of interest: horizontal range and height box; non-finite points dropped.
2. Background (static sensor): a range image over (elevation, azimuth) bins holding, per pixel,
   the background range: a low quantile of the ranges seen there during the first
   ``background_learn_s`` seconds (no detections then). Afterwards a point is foreground when it
   is closer than the background by more than ``background_margin``. A pixel seeing only farther
   returns for a few scans takes the farther range (whoever stood there during learning has left);
   a pixel that stays foreground outside every track for ``background_absorb_s`` is absorbed (a
   chair was moved). Pixels never seen during learning count as free space. With ``background`` off (a moving robot), points within
   ``ground_clearance`` of the floor are removed instead.
3. Clustering: foreground points binned on a horizontal grid (``cell``), 8-connected components.
4. Gates: point count, top height above the floor, vertical extent and footprint of a person.
5. Tracking: constant-velocity prediction, Hungarian association on centroid distance within
   ``track_gate``; a track is reported after ``min_hits`` hits and survives ``max_missed`` missed
   scans (short occlusions); new ids are never reused.
6. Each reported person's points normalised as the bundle declares (despite_core's
   ``normalise_frame``: centring, then farthest point sampling to 256 points).
The floor height is ``ground_z`` when given, else estimated during learning (the z histogram's
peak below the sensor).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from despite_core.data.sampling import normalise_frame


@dataclass(frozen=True)
class PerceptionConfig:
    min_range: float = 0.5            # m, horizontal
    max_range: float = 15.0           # m, horizontal
    min_z: float = -3.0               # m, sensor frame
    max_z: float = 3.0
    ground_z: float | None = None     # floor height in the sensor frame (m); None = estimate while learning
    ground_clearance: float = 0.1     # m above the floor removed when the background model is off
    background: bool = True
    background_learn_s: float = 1.0
    background_absorb_s: float = 10.0
    background_margin: float = 0.25   # m of range
    azimuth_bins: int = 1024
    elevation_bins: int = 256         # over [-elevation_span, +elevation_span]
    elevation_span_deg: float = 60.0
    cell: float = 0.15                # m, clustering grid
    min_points: int = 15
    min_top: float = 0.7              # m above the floor: a seated or crouching person's top
    max_top: float = 2.4
    min_extent: float = 0.4           # m, vertical extent of the cluster
    max_footprint: float = 2.2        # m, diagonal of the horizontal bounding box (arms out)
    track_gate: float = 1.0           # m
    min_hits: int = 3
    max_missed: int = 5
    points_per_frame: int = 256

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.min_range < self.max_range, "0 <= min_range < max_range"),
            (self.min_z < self.max_z, "min_z < max_z"),
            (self.background_learn_s > 0, "background_learn_s > 0"),
            (self.background_absorb_s > 0, "background_absorb_s > 0"),
            (self.background_margin > 0, "background_margin > 0"),
            (self.azimuth_bins >= 64 and self.elevation_bins >= 16, "azimuth_bins >= 64 and elevation_bins >= 16"),
            (0 < self.elevation_span_deg <= 90, "0 < elevation_span_deg <= 90"),
            (self.cell > 0, "cell > 0"),
            (self.min_points >= 1, "min_points >= 1"),
            (0 <= self.min_top < self.max_top, "0 <= min_top < max_top"),
            (self.track_gate > 0, "track_gate > 0"),
            (self.min_hits >= 1 and self.max_missed >= 0, "min_hits >= 1 and max_missed >= 0"),
            (self.points_per_frame >= 1, "points_per_frame >= 1"),
        ]
        bad = [text for ok, text in checks if not ok]
        if bad:
            raise ValueError(f"invalid perception settings: need {'; '.join(bad)}")


@dataclass
class Person:
    """One tracked person in one scan."""

    track_id: int
    indices: np.ndarray          # (n,) indices into the scan's points
    points: np.ndarray           # (n, 3) sensor frame, m
    centroid: np.ndarray         # (3,)
    normalised: np.ndarray       # (P, 3) the model's input frame


@dataclass
class ScanResult:
    stamp: float
    people: list[Person]
    learning: bool               # the background is still being learned (no detections)
    foreground: int              # points left after ROI and background
    clusters: int                # clusters before gates
    lost: list[int] = field(default_factory=list)   # track ids deleted at this scan
    seconds: float = 0.0         # processing time


def estimate_ground(xyz: np.ndarray, horiz: np.ndarray) -> float | None:
    """The floor height in the sensor frame: the median of the points within 0.1 m above the 2nd
    percentile of heights (points 1-12 m away horizontally). None when fewer than 100 such points."""
    z = xyz[(horiz > 1.0) & (horiz < 12.0), 2]
    if z.size < 100:
        return None
    low = float(np.percentile(z, 2))
    return float(np.median(z[(z >= low - 0.1) & (z <= low + 0.1)]))


class RangeBackground:
    """Per-pixel background range over (elevation, azimuth) bins; see the module docstring.

    Learning keeps every return; the background of a pixel is then a low quantile
    (``LEARN_QUANTILE``) of its ranges, so an object edge whose pixel now and then sees the wall
    behind it stays background, while a person crossing the pixel in a few frames does not count.
    A pixel whose returns are all farther than the background for ``FARTHER_SCANS`` scans in a row
    takes the farther range (whoever stood there has left)."""

    LEARN_QUANTILE = 0.3
    FARTHER_SCANS = 3

    def __init__(self, cfg: PerceptionConfig) -> None:
        self.cfg = cfg
        self.size = cfg.elevation_bins * cfg.azimuth_bins
        self.bg = np.full(self.size, np.inf, np.float32)
        self.run = np.zeros(self.size, np.int32)          # consecutive scans foreground outside tracks
        self.far_run = np.zeros(self.size, np.int16)      # consecutive scans with only farther returns
        self._far_any = False
        self._run_pix = np.zeros(0, np.int64)             # pixels whose absorption count is running
        self.start: float | None = None
        self.learned = False
        self._learn: list[tuple[np.ndarray, np.ndarray]] = []

    def pixels(self, xyz: np.ndarray, horiz: np.ndarray) -> np.ndarray:
        c = self.cfg
        az = np.arctan2(xyz[:, 1], xyz[:, 0])                               # (-pi, pi]
        el = np.arctan2(xyz[:, 2], horiz)
        ai = ((az + math.pi) * (c.azimuth_bins / (2 * math.pi))).astype(np.int32) % c.azimuth_bins
        span = math.radians(c.elevation_span_deg)
        ei = np.clip(((el + span) * (c.elevation_bins / (2 * span))).astype(np.int32), 0, c.elevation_bins - 1)
        return ei * c.azimuth_bins + ai

    def _finish_learning(self) -> None:
        pix = np.concatenate([p for p, _ in self._learn])
        rng = np.concatenate([r for _, r in self._learn])
        self._learn = []
        self.learned = True
        if pix.size == 0:
            return                                                            # nothing seen: all free space
        order = np.lexsort((rng, pix))
        pix, rng = pix[order], rng[order]
        first = np.flatnonzero(np.r_[True, pix[1:] != pix[:-1]])
        counts = np.diff(np.r_[first, len(pix)])
        bg = np.zeros(self.size, np.float32)
        bg[pix[first]] = rng[first + np.floor(self.LEARN_QUANTILE * (counts - 1)).astype(np.int64)]
        img = bg.reshape(self.cfg.elevation_bins, self.cfg.azimuth_bins)
        near = ndimage.maximum_filter(img, size=3, mode="wrap")               # a pixel between two seen ones
        img[img == 0] = near[img == 0]
        bg[bg == 0] = np.inf                                                  # never seen near: free space
        self.bg = bg

    def foreground(self, pix: np.ndarray, rng: np.ndarray, stamp: float) -> np.ndarray | None:
        """Foreground mask of the points, or None while learning."""
        if self.start is None:
            if pix.size == 0:
                return None                               # learning starts with the first scan that has returns
            self.start = stamp
        if not self.learned:
            self._learn.append((pix.copy(), rng.astype(np.float32)))
            if stamp - self.start >= self.cfg.background_learn_s:
                self._finish_learning()
            return None
        bg = self.bg[pix]
        m = self.cfg.background_margin
        farther = rng > bg + m
        if farther.any():
            # Count scans in which a pixel saw only farther returns; any other return resets it.
            far_pix = pix[farther]
            self.far_run[far_pix] = self.far_run[far_pix] + 1
            self.far_run[pix[~farther]] = 0
            ready = farther & (self.far_run[pix] >= self.FARTHER_SCANS)
            if ready.any():
                self.bg[pix[ready]] = 0
                np.maximum.at(self.bg, pix[ready], rng[ready])
                self.far_run[pix[ready]] = 0
        elif self._far_any:
            self.far_run[pix] = 0
        self._far_any = bool(farther.any())
        return rng < bg - m

    def absorb(self, pix_outside_tracks: np.ndarray, rng: np.ndarray, scans: int) -> None:
        """Count consecutive foreground scans per pixel outside tracks; absorb after ``scans``."""
        counts = self.run[pix_outside_tracks] + 1
        self.run[self._run_pix] = 0                       # pixels not foreground now start over
        self.run[pix_outside_tracks] = counts
        sel = counts >= scans
        if sel.any():
            ready = pix_outside_tracks[sel]
            np.minimum.at(self.bg, ready, rng[sel])
            self.run[ready] = 0
        self._run_pix = pix_outside_tracks


@dataclass
class _Track:
    tid: int
    pos: np.ndarray               # (2,) x, y
    vel: np.ndarray               # (2,) m/s
    stamp: float
    hits: int = 1
    missed: int = 0


class Tracker:
    """Constant-velocity tracks of horizontal centroids, Hungarian association within a gate."""

    def __init__(self, cfg: PerceptionConfig) -> None:
        self.cfg = cfg
        self.tracks: list[_Track] = []
        self.next_id = 1

    def reset(self) -> list[int]:
        """Drop every track (ids are still never reused)."""
        lost = [t.tid for t in self.tracks]
        self.tracks = []
        return lost

    def predict(self, stamp: float, min_hits: int = 2) -> np.ndarray:
        """(K, 2) predicted positions at ``stamp`` of the tracks with at least ``min_hits`` hits."""
        return np.array([t.pos + t.vel * max(stamp - t.stamp, 0.0) for t in self.tracks if t.hits >= min_hits],
                        np.float64).reshape(-1, 2)

    def update(self, stamp: float, centroids: np.ndarray) -> tuple[list[int | None], list[int]]:
        """Associate (D, 2) centroids; returns the reported track id per detection (None while a
        track is tentative) and the ids deleted now."""
        c = self.cfg
        pred = self.predict(stamp, min_hits=1)                                          # every track
        assign: dict[int, int] = {}
        if len(self.tracks) and len(centroids):
            cost = np.linalg.norm(pred[:, None, :] - centroids[None, :, :], axis=2)      # (K, D)
            # Gate before assigning: the best assignment among the pairs inside the gate.
            cost = np.where(cost <= c.track_gate, cost, 1e6)
            rows, cols = linear_sum_assignment(cost)
            assign = {int(d): int(k) for k, d in zip(rows, cols) if cost[k, d] <= c.track_gate}
        ids: list[int | None] = []
        seen = set()
        for d, xy in enumerate(centroids):
            if d in assign:
                t = self.tracks[assign[d]]
                dt = stamp - t.stamp
                if dt > 0:
                    meas_vel = (xy - t.pos) / dt
                    t.vel = 0.5 * t.vel + 0.5 * meas_vel
                t.pos, t.stamp = xy.copy(), stamp
                t.hits += 1
                t.missed = 0
            else:
                t = _Track(self.next_id, xy.copy(), np.zeros(2), stamp)
                self.next_id += 1
                self.tracks.append(t)
            seen.add(t.tid)
            ids.append(t.tid if t.hits >= c.min_hits else None)
        lost = []
        keep = []
        for t in self.tracks:
            if t.tid not in seen:
                t.missed += 1
            if t.missed > c.max_missed:
                lost.append(t.tid)
            else:
                keep.append(t)
        self.tracks = keep
        return ids, lost


class Perception:
    """Scan in, tracked people out. Stateful: background, floor and tracks persist across scans;
    :meth:`reset` forgets them (a bag looping, a new scene)."""

    def __init__(self, cfg: PerceptionConfig = PerceptionConfig()) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> list[int]:
        self.background = RangeBackground(self.cfg) if self.cfg.background else None
        self.ground = self.cfg.ground_z
        if hasattr(self, "tracker"):
            lost = self.tracker.reset()                 # the same tracker: new ids continue after the old
        else:
            lost, self.tracker = [], Tracker(self.cfg)
        self.last_stamp: float | None = None
        self.scan_period = 0.1
        return lost

    def process(self, xyz: np.ndarray, stamp: float) -> ScanResult:
        """``xyz`` (N, 3) in the sensor frame, m (NaN rows allowed); ``stamp`` in seconds."""
        t0 = time.perf_counter()
        c = self.cfg
        pts = np.asarray(xyz, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"expected (N, 3) points, got shape {pts.shape}")
        lost: list[int] = []
        if self.last_stamp is not None and stamp < self.last_stamp:
            lost = self.reset()                           # time went backwards: start over
        if self.last_stamp is not None and stamp > self.last_stamp:
            self.scan_period += 0.1 * (min(stamp - self.last_stamp, 1.0) - self.scan_period)   # for the absorption count
        self.last_stamp = stamp
        horiz = np.hypot(pts[:, 0], pts[:, 1])
        finite = np.flatnonzero(np.isfinite(horiz) & np.isfinite(pts[:, 2]))
        roi = (horiz >= c.min_range) & (horiz <= c.max_range) & (pts[:, 2] >= c.min_z) & (pts[:, 2] <= c.max_z)
        if self.ground is None:                          # until found (a sparse or empty start must not block it)
            self.ground = estimate_ground(pts[finite], horiz[finite])
        if self.background is not None:
            # The background sees every finite return, not only the ROI: a surface flickering across
            # the ROI's edge must not look new.
            p, h = (pts, horiz) if len(finite) == len(pts) else (pts[finite], horiz[finite])
            pix = self.background.pixels(p, h)
            rng = np.sqrt(h * h + p[:, 2] * p[:, 2])
            fg = self.background.foreground(pix, rng, stamp)
            if fg is None:
                return ScanResult(stamp, [], True, 0, 0, lost, time.perf_counter() - t0)
            fg &= roi[finite]
            idx = finite
        else:
            idx = np.flatnonzero(roi)                     # NaN compares false: dropped here
            p = pts[idx]
            floor = self.ground if self.ground is not None else -np.inf
            fg = p[:, 2] > floor + c.ground_clearance
        f_idx = idx[fg]
        fp = p[fg]
        people: list[Person] = []
        n_clusters = 0
        in_track = np.zeros(len(fp), bool)
        if len(fp):
            labels, n_clusters = self._cluster(fp)
            dets = self._gate(fp, self._split(fp, labels, n_clusters, self.tracker.predict(stamp)))
            centroids = np.array([fp[m].mean(0) for m in dets], np.float32).reshape(-1, 3)
            ids, lost_now = self.tracker.update(stamp, centroids[:, :2].astype(np.float64))
            lost += lost_now
            for tid, m, cen in zip(ids, dets, centroids):
                in_track[m] = True                        # tentative tracks are not absorbed either
                if tid is not None:
                    people.append(Person(tid, f_idx[m], fp[m], cen, normalise_frame(fp[m], c.points_per_frame)))
        else:
            lost += self.tracker.update(stamp, np.zeros((0, 2)))[1]
        if self.background is not None:
            fg_pix, fg_rng = pix[fg], rng[fg]
            scans = max(1, int(round(c.background_absorb_s / self.scan_period)))
            self.background.absorb(fg_pix[~in_track], fg_rng[~in_track], scans)
        return ScanResult(stamp, people, False, int(len(fp)), int(n_clusters), lost, time.perf_counter() - t0)

    def _cluster(self, fp: np.ndarray) -> tuple[np.ndarray, int]:
        cell = self.cfg.cell
        ij = np.floor(fp[:, :2] / cell).astype(np.int64)
        ij -= ij.min(0)
        shape = tuple(int(v) + 1 for v in ij.max(0))
        grid = np.zeros(shape, bool)
        grid[ij[:, 0], ij[:, 1]] = True
        lab, n = ndimage.label(grid, structure=np.ones((3, 3), bool))
        return lab[ij[:, 0], ij[:, 1]] - 1, n           # (F,) 0..n-1

    def _split(self, fp: np.ndarray, labels: np.ndarray, n: int, predicted: np.ndarray) -> list[np.ndarray]:
        """Point indices per cluster; a cluster holding the predicted positions of several tracks
        (people standing close together) is split among them by nearest centre (2-means steps)."""
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n + 1))
        out = []
        for k in range(n):
            members = np.sort(order[bounds[k]:bounds[k + 1]])
            if len(predicted) >= 2 and len(members) >= 2 * self.cfg.min_points:
                xy = fp[members, :2].astype(np.float64)
                lo, hi = xy.min(0) - 0.3, xy.max(0) + 0.3
                inside = predicted[np.all((predicted >= lo) & (predicted <= hi), axis=1)]
                if len(inside) >= 2:
                    centres = inside.copy()
                    for _ in range(3):
                        near = np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(2), axis=1)
                        centres = np.array([xy[near == j].mean(0) if (near == j).any() else centres[j]
                                            for j in range(len(centres))])
                    out.extend(members[near == j] for j in range(len(centres)) if (near == j).any())
                    continue
            out.append(members)
        return out

    def _gate(self, fp: np.ndarray, clusters: list[np.ndarray]) -> list[np.ndarray]:
        c = self.cfg
        out = []
        for members in clusters:
            if len(members) < c.min_points:
                continue
            q = fp[members]
            lo, hi = q.min(0), q.max(0)
            if hi[2] - lo[2] < c.min_extent:
                continue
            if self.ground is not None and not (c.min_top <= hi[2] - self.ground <= c.max_top):
                continue                                  # (no floor known yet: the height gate waits)
            if math.hypot(hi[0] - lo[0], hi[1] - lo[1]) > c.max_footprint:
                continue
            out.append(members)
        return out
