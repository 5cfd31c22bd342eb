"""The perception front end: from a raw LiDAR scan to per-person point sets with stable track ids.
ROS-free (numpy + scipy); the har_node and bag-eval call :meth:`Perception.process` per scan.

Pipeline, from the first scan on (detection never waits for, nor depends on, motion):
1. Region of interest: horizontal range and height box; non-finite points dropped.
2. Floor: a plane fitted by RANSAC (:mod:`.floor`; any tilt or mounting height), refitted every
   ``floor_refit_s``; points within ``ground_clearance`` of it or above ``max_top`` are dropped.
   Everything after works in the floor's frame (heights above it, coordinates along it).
3. Background (static sensor, optional): a range image over (elevation, azimuth) bins learned
   during the first ``background_learn_s`` from every return EXCEPT those of person-like
   clusters, so a person present from the first scan is never learned; it removes walls and
   furniture before clustering (a person next to a cabinet is a cluster of their own). A pixel
   seeing only farther returns for a few scans takes the farther range; a non-person cluster that
   stays for ``background_absorb_s`` is absorbed (a chair was moved). A person is never absorbed.
4. Clustering: candidate points binned on a horizontal grid (``cell``) along the floor,
   8-connected components; a cluster holding the predictions of several tracks is split.
5. Person or not: loose size gates, then the learned shape classifier (:mod:`.person`) on each
   cluster; a cluster scoring above the classifier's threshold can start a track, one above half
   of it can only continue one (a person half hidden by a table).
6. Tracking: constant-velocity prediction, Hungarian association on centroid distance within
   ``track_gate`` (a gated assignment: leaving a track unmatched costs its gate); a track is
   reported after ``min_hits`` hits and survives ``max_missed`` missed scans (short occlusions); a
   confirmed track lost for up to 3 s is taken up again by a person reappearing within 1 m of where
   it was lost (longer occlusions keep the id); new ids are never reused.
7. Each reported person's points normalised as the bundle declares (despite_core's
   ``normalise_frame``: centring, then farthest point sampling to 256 points), in the sensor frame;
   all people of a scan in one batched loop (``normalise_frames``, identical results).
With ``background`` off (a moving robot) steps 1, 2 and 4-7 run alone.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from despite_core.data.sampling import normalise_frames
from despite_core.runtime.buffers import MAX_TRACKS
from despite_core.runtime.floor import FloorPlane, fit_floor
from despite_core.runtime.person import PersonClassifier, cluster_features


@dataclass(frozen=True)
class PerceptionConfig:
    min_range: float = 0.5            # m, horizontal
    max_range: float = 15.0           # m, horizontal
    min_z: float = -3.0               # m, sensor frame
    max_z: float = 3.0
    ground_z: float | None = None     # level floor at this height in the sensor frame (m); None = fit a plane
    ground_clearance: float = 0.1     # m above the floor removed (floor returns)
    floor_refit_s: float = 1.0        # s between floor refits (a robot's pitch changes)
    background: bool = True
    background_learn_s: float = 1.0
    background_absorb_s: float = 10.0
    background_margin: float = 0.25   # m of range
    azimuth_bins: int = 1024
    elevation_bins: int = 256         # over [-elevation_span, +elevation_span]
    elevation_span_deg: float = 60.0
    cell: float = 0.15                # m, clustering grid
    min_points: int = 8
    min_top: float = 0.6              # m above the floor: a seated or crouching person's top
    max_top: float = 2.4
    min_extent: float = 0.3           # m, vertical extent of the cluster
    min_top_down: float = 0.15        # m: a confirmed track's person who went down (fallen, lying on the floor)
    down_gate: float = 1.2            # m from a confirmed track's predicted position for such a low cluster
    max_footprint: float = 2.2        # m, diagonal of the horizontal bounding box (arms out)
    track_gate: float = 1.0           # m
    min_hits: int = 3
    max_missed: int = 5
    points_per_frame: int = 256
    classifier: str = ""              # person classifier file; "" = the shipped one

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
            (0 <= self.min_top_down <= self.min_top and self.down_gate > 0, "0 <= min_top_down <= min_top, down_gate > 0"),
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
    normalised: np.ndarray | None    # (P, 3) the model's input frame
    score: float = 1.0           # person classifier probability of this scan's cluster


@dataclass
class ScanResult:
    stamp: float
    people: list[Person]
    learning: bool               # the background is still being learned (detections go on meanwhile)
    foreground: int              # points left after ROI and background
    clusters: int                # clusters before gates
    lost: list[int] = field(default_factory=list)   # track ids deleted at this scan
    seconds: float = 0.0         # processing time


class RangeBackground:
    """Per-pixel background range over (elevation, azimuth) bins; see the module docstring.

    Learning keeps every return but those of person-like clusters (their pixels stay free space);
    the background of a pixel is then a low quantile
    (``LEARN_QUANTILE``) of its ranges, so an object edge whose pixel now and then sees the wall
    behind it stays background, while a person crossing the pixel in a few frames does not count.
    A pixel whose returns are all farther than the background for ``FARTHER_SCANS`` scans in a row
    takes the farther range (whoever stood there has left)."""

    LEARN_QUANTILE = 0.3
    LEARN_SCANS = 5
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
        self._person_pix: list[np.ndarray] = []
        self.pending = np.zeros(self.size, bool)           # pixels hidden by a person while learning

    def pixels(self, xyz: np.ndarray, horiz: np.ndarray) -> np.ndarray:
        c = self.cfg
        az = np.arctan2(xyz[:, 1], xyz[:, 0])                               # (-pi, pi]
        el = np.arctan2(xyz[:, 2], horiz)
        ai = ((az + math.pi) * (c.azimuth_bins / (2 * math.pi))).astype(np.int32) % c.azimuth_bins
        span = math.radians(c.elevation_span_deg)
        ei = np.clip(((el + span) * (c.elevation_bins / (2 * span))).astype(np.int32), 0, c.elevation_bins - 1)
        return ei * c.azimuth_bins + ai

    def learn(self, pix: np.ndarray, rng: np.ndarray, stamp: float, person: np.ndarray) -> None:
        """One scan of the learning period: every return except those of person-like clusters
        (``person`` mask), which stay free space however long the person stays."""
        if self.start is None:
            if pix.size == 0:
                return                                    # learning starts with the first scan that has returns
            self.start = stamp
        self._learn.append((pix[~person], rng[~person].astype(np.float32)))
        self._person_pix.append(pix[person])
        if stamp - self.start >= self.cfg.background_learn_s:
            self._finish_learning()

    def _finish_learning(self) -> None:
        # at most LEARN_SCANS scans, evenly spread: enough samples for the quantile of each pixel, and
        # the one-off cost at the end of learning stays bounded on dense LiDARs and fast rates
        scans = self._learn[:: max(1, -(-len(self._learn) // self.LEARN_SCANS))]
        pix = np.concatenate([p for p, _ in scans])
        rng = np.concatenate([r for _, r in scans])
        person = np.unique(np.concatenate(self._person_pix)) if self._person_pix else np.zeros(0, np.int64)
        self._learn, self._person_pix = [], []
        self.learned = True
        if pix.size == 0:
            return                                                            # nothing seen: all free space
        # one sort of (pixel, range in mm) packed into int64: ~4x faster than lexsort on 2.6M returns
        key = np.sort((pix.astype(np.int64) << 21) | np.clip(rng * 1000.0, 0, (1 << 21) - 1).astype(np.int64))
        pix, rng = key >> 21, (key & ((1 << 21) - 1)).astype(np.float32) / 1000.0
        first = np.flatnonzero(np.r_[True, pix[1:] != pix[:-1]])
        counts = np.diff(np.r_[first, len(pix)])
        bg = np.zeros(self.size, np.float32)
        bg[pix[first]] = rng[first + np.floor(self.LEARN_QUANTILE * (counts - 1)).astype(np.int64)]
        img = bg.reshape(self.cfg.elevation_bins, self.cfg.azimuth_bins)
        # Every pixel a person-like cluster covered in any learning scan is bridged from its row, also
        # where other scans learned it: in a scan where that person's cluster was not recognised
        # (merged with a chair, half hidden) their returns were learned, and would hide them for good.
        hidden = np.zeros(self.size, bool)
        hidden[person] = True
        hidden = hidden.reshape(img.shape)
        img[hidden] = 0
        near = ndimage.maximum_filter(img, size=3, mode="wrap")               # a pixel between two seen ones
        fill = (img == 0) & ~hidden
        img[fill] = near[fill]
        self._fill_behind_people(img, hidden)
        bg[bg == 0] = np.inf                                                  # never seen near: free space
        self.bg = bg
        self.pending = hidden.reshape(-1).copy()                             # what people hid: learned when revealed

    def reveal(self, pix: np.ndarray, rng: np.ndarray) -> None:
        """Returns on pixels a person hid during learning, now seen away from that person: what stood
        behind them (a table, a cabinet) joins the background at once instead of becoming a track."""
        sel = self.pending[pix]
        if sel.any():
            np.minimum.at(self.bg, pix[sel], rng[sel])
            self.pending[pix[sel]] = False

    MAX_HIDDEN_BINS = 64                  # widest run of azimuth bins hidden by a person that is bridged

    def _fill_behind_people(self, img: np.ndarray, hidden: np.ndarray) -> None:
        """What a person present through learning hides: each elevation row's background is bridged
        across the person's silhouette by linear interpolation between the seen pixels either side
        (the wall or floor behind them continues), so the person stands out and, once they leave,
        the surface behind is background at once. Runs wider than :attr:`MAX_HIDDEN_BINS` stay free space."""
        a = img.shape[1]
        for r in np.flatnonzero(hidden.any(1)):
            row = img[r]
            seen = np.flatnonzero(row > 0)
            if len(seen) < 2:
                continue
            gaps = np.flatnonzero(hidden[r])
            # periodic interpolation over azimuth, from the seen pixels of this row
            xs = np.r_[seen - a, seen, seen + a]
            ys = np.tile(row[seen], 3)
            j = np.searchsorted(seen, gaps)
            left = seen[(j - 1) % len(seen)]
            right = seen[j % len(seen)]
            width = (right - left) % a
            ok = (width > 0) & (width <= self.MAX_HIDDEN_BINS)
            row[gaps[ok]] = np.interp(gaps[ok], xs, ys)

    def foreground(self, pix: np.ndarray, rng: np.ndarray) -> np.ndarray:
        """Foreground mask of the points (after learning)."""
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


def _gated_assignment(cost: np.ndarray, gates: np.ndarray, unmatched: np.ndarray | None = None) -> list[tuple[int, int]]:
    """The (row, column) pairs of least total cost among those within each row's gate, where
    leaving a row unmatched costs ``unmatched`` (default: its gate): the Hungarian method on
    ``cost - unmatched`` with the pairs outside the gate (or dearer than leaving the row unmatched)
    at zero. Not the most pairs first: a forced assignment of every track (rows padded out of the
    gate) would rather swap two people's tracks than leave one track unmatched for a scan (one
    person half hidden beside another)."""
    if cost.size == 0:
        return []
    unmatched = gates if unmatched is None else unmatched
    inside = cost <= np.minimum(gates, unmatched)[:, None]
    gain = np.where(inside, cost - unmatched[:, None], 0.0)
    return [(int(i), int(j)) for i, j in zip(*linear_sum_assignment(gain)) if inside[i, j]]


@dataclass
class _Track:
    tid: int
    pos: np.ndarray               # (2,) x, y
    vel: np.ndarray               # (2,) m/s
    stamp: float
    hits: int = 1
    missed: int = 0
    strong: float = -1e9          # stamp of its last person-scoring detection
    trail: list = field(default_factory=list)       # (stamp, pos) of the measurements of the last 2 STILL_S


class Tracker:
    """Constant-velocity tracks of horizontal centroids, Hungarian association within a gate
    (:func:`_gated_assignment`): confirmed tracks first, with the recently lost ones
    (:meth:`_first_association`), then the confirmed tracks that got nothing with a gate that grows
    with the time unseen (:meth:`_coast`), then tentative tracks, and last the small clusters for
    confirmed tracks still without a detection (:meth:`update`)."""

    REID_S = 3.0               # s a lost confirmed track can be taken up again where it was lost
    REID_GATE = 1.0            # m from where it was last seen
    REID_STILL_S = 30.0        # s a lost track that was standing still waits for its person where it was lost
    REID_STILL_GATE = 0.5      # m from where it was last seen, for such a track
    STILL_SPEED = 0.3          # m/s: a track slower than this over its last STILL_S when lost was standing still
    STILL_S = 1.0
    FRAGMENT_GAP = 0.45        # m: a detection this close to a tracked person's is part of them
    COAST_SPEED = 1.5          # m/s a person unseen may have gone off their track's prediction (walking pace)
    COAST_GATE = 2.0           # m: the most such a gate grows to
    SPARSE_S = 2.0             # s a confirmed track may go on small clusters alone (sparse_references)
    MAX_TRACKS = MAX_TRACKS    # tracks held, and lost ones kept for re-identification (buffers.MAX_TRACKS)

    def __init__(self, cfg: PerceptionConfig) -> None:
        self.cfg = cfg
        self.tracks: list[_Track] = []
        self.lost: list[_Track] = []                    # confirmed tracks lost in the last REID_S
        self.next_id = 1
        self.refused = 0                                # new tracks refused: MAX_TRACKS held
        self.lost_evicted = 0                           # lost tracks forgotten early: MAX_TRACKS waiting

    def reset(self) -> list[int]:
        """Drop every track (ids are still never reused)."""
        lost = [t.tid for t in self.tracks]
        self.tracks, self.lost = [], []
        return lost

    def _reid_gates(self, stamp: float) -> np.ndarray:
        """Forget the lost tracks that waited long enough; the re-identification gate (m, around where
        each of the others was lost): REID_GATE plus COAST_SPEED per second since it was last seen
        (up to COAST_GATE) within REID_S seconds (a person who walked on while hidden), or
        REID_STILL_GATE within REID_STILL_S for a track that was standing still when lost (slower
        than STILL_SPEED: a person in one place whom the LiDAR lost for a while: sparse, low, hidden
        behind someone)."""
        def still(t: _Track) -> bool:                 # from its travel over the last STILL_S (a centroid is noisy)
            back = [(s, q) for s, q in t.trail if s <= t.stamp - self.STILL_S]
            return bool(back) and float(np.linalg.norm(t.pos - back[-1][1])) < self.STILL_SPEED * (t.stamp - back[-1][0])

        kept = [(t, still(t)) for t in self.lost]
        kept = [(t, st) for t, st in kept if stamp - t.stamp <= (self.REID_STILL_S if st else self.REID_S)]
        self.lost = [t for t, _ in kept]
        return np.array([max(self._grown_gate(self.REID_GATE, stamp - t.stamp) if stamp - t.stamp <= self.REID_S else 0.0,
                             self.REID_STILL_GATE if st else 0.0) for t, st in kept], np.float64)

    def _take_up(self, t: _Track, stamp: float, xy: np.ndarray) -> None:
        """Lost track ``t`` has its person again (same id), here and now."""
        self.lost.remove(t)
        t.pos, t.vel, t.stamp, t.missed, t.strong = xy.copy(), np.zeros(2), stamp, 0, stamp
        t.hits = max(t.hits, self.cfg.min_hits)
        self.tracks.append(t)

    def _revive(self, stamp: float, xy: np.ndarray) -> _Track | None:
        """A person back after an occlusion longer than ``max_missed``, whom no track took: the nearest
        lost track whose re-identification gate (:meth:`_reid_gates`) holds them takes them again."""
        gates = self._reid_gates(stamp)
        d = np.array([float(np.linalg.norm(xy - t.pos)) for t in self.lost])
        ok = np.flatnonzero(d <= gates)
        if not len(ok):
            return None
        t = self.lost[int(ok[np.argmin(d[ok])])]
        self._take_up(t, stamp, xy)
        return t

    def predict(self, stamp: float, min_hits: int = 2, ids: set[int] | None = None) -> np.ndarray:
        """(K, 2) predicted positions at ``stamp`` of the tracks with at least ``min_hits`` hits
        (and, given ``ids``, only those tracks)."""
        return np.array([t.pos + t.vel * max(stamp - t.stamp, 0.0) for t in self.tracks
                         if t.hits >= min_hits and (ids is None or t.tid in ids)], np.float64).reshape(-1, 2)

    def down_references(self, stamp: float, predicted: np.ndarray) -> np.ndarray:
        """Where a person who went down may be: the confirmed tracks' predicted positions, their last
        measured ones (a toppling body's centroid moves fast, and its velocity overshoots), and where
        confirmed tracks were lost in the last REID_S (a track that ended during the fall: the low
        cluster then revives it, same id)."""
        last = [t.pos for t in self.tracks if t.hits >= 2]
        lost = [t.pos for t in self.lost if stamp - t.stamp <= self.REID_S]
        return np.concatenate([predicted.reshape(-1, 2), np.array(last + lost, np.float64).reshape(-1, 2)])

    def _grown_gate(self, base: float, unseen_s: float) -> float:
        """A gate of ``base`` m grown by COAST_SPEED per second unseen, up to COAST_GATE (never below
        ``base``): where a person may be after walking on while hidden."""
        return min(base + self.COAST_SPEED * unseen_s, max(self.COAST_GATE, base))

    def _piece_of(self, centroids: np.ndarray, d: int, held: dict[int, _Track]) -> int | None:
        """The held detection (a confirmed track's, this scan) nearest to detection ``d`` when within
        FRAGMENT_GAP of it (``d`` is a piece of that person), else None."""
        if not held:
            return None
        gap = {e: float(np.linalg.norm(centroids[e] - centroids[d])) for e in held}
        near = min(gap, key=gap.get)
        return near if gap[near] <= self.FRAGMENT_GAP else None

    def _coast(self, stamp: float, centroids: np.ndarray, strong: np.ndarray, assign: dict[int, int],
               held: dict[int, _Track]) -> None:
        """Second association, in place into ``assign``: a confirmed track that got no detection (its
        person half hidden, the centroid shifted, the velocity off) takes a person-scoring detection
        that no track took, within a gate around its prediction or its last measurement that grows
        by COAST_SPEED per second since it was last seen (up to COAST_GATE), instead of a new track
        starting on its person. Pieces of a tracked person (FRAGMENT_GAP) are not candidates."""
        c = self.cfg
        taken = set(assign.values())
        ks = [k for k, t in enumerate(self.tracks) if k not in taken and t.hits >= c.min_hits]
        ds = [d for d in range(len(centroids))
              if d not in assign and strong[d] and self._piece_of(centroids, d, held) is None]
        if not ks or not ds:
            return
        cost = np.zeros((len(ks), len(ds)))
        gates = np.zeros(len(ks))
        for i, k in enumerate(ks):
            t = self.tracks[k]
            dt = max(stamp - t.stamp, 0.0)
            gates[i] = self._grown_gate(c.track_gate, dt)
            for j, d in enumerate(ds):
                cost[i, j] = min(float(np.linalg.norm(centroids[d] - t.pos - t.vel * dt)), float(np.linalg.norm(centroids[d] - t.pos)))
        for i, j in _gated_assignment(cost, gates):
            assign[ds[j]] = ks[i]
            self.tracks[ks[i]].vel = np.zeros(2)      # the old velocity took it off its person

    def _first_association(self, stamp: float, ks: list[int], pred: np.ndarray, centroids: np.ndarray,
                           strong: np.ndarray, small: np.ndarray, assign: dict[int, int]) -> None:
        """In place into ``assign``: the confirmed tracks ``ks`` (gate ``track_gate`` around their
        predictions) and the lost tracks (their re-identification gates around where they were lost;
        ``strong`` detections only) in one gated assignment over the detections that are not
        ``small``; a lost track assigned is taken up again.
        Leaving any of them unmatched costs ``track_gate``, so a lost track takes a detection here
        only within that distance (farther, :meth:`_revive` may take it up later, if no track
        took the detection), and it outweighs a coasting neighbour's wrong guess when it is the
        closer (a still person, reappearing where they were lost, beside someone walking past)."""
        c = self.cfg
        ds = [d for d in range(len(centroids)) if d not in assign and not small[d]]
        gates = self._reid_gates(stamp)
        if not ds or not (ks or len(gates)):
            return
        xy = centroids[ds]
        cost = np.concatenate([np.linalg.norm(pred[ks][:, None, :] - xy[None], axis=2).reshape(len(ks), len(ds)),
                               np.array([np.linalg.norm(t.pos - xy, axis=1) for t in self.lost]).reshape(len(gates), len(ds))])
        lost_rows = np.arange(len(ks), len(ks) + len(gates))
        cost[np.ix_(lost_rows, [j for j, d in enumerate(ds) if not strong[d]])] = np.inf   # only people start again
        row_gates = np.concatenate([np.full(len(ks), c.track_gate), gates])
        lost = list(self.lost)
        for i, j in _gated_assignment(cost, row_gates, np.full(len(row_gates), c.track_gate)):
            if i < len(ks):
                assign[ds[j]] = ks[i]
            else:
                self._take_up(lost[i - len(ks)], stamp, centroids[ds[j]])
                assign[ds[j]] = len(self.tracks) - 1

    def sparse_references(self, stamp: float) -> np.ndarray:
        """(K, 2) predicted positions of the confirmed tracks that had a person-scoring detection in
        the last SPARSE_S: a cluster too small for the classifier (a far person on a 16-beam LiDAR)
        may continue them, for that long (a wall fragment the track drifted onto never scores)."""
        ids = {t.tid for t in self.tracks if t.hits >= self.cfg.min_hits and stamp - t.strong <= self.SPARSE_S}
        return self.predict(stamp, min_hits=self.cfg.min_hits, ids=ids)

    def update(self, stamp: float, centroids: np.ndarray, strong: np.ndarray | None = None,
               small: np.ndarray | None = None) -> tuple[list[int | None], list[int]]:
        """Associate (D, 2) centroids; returns the reported track id per detection (None while a
        track is tentative, or for a weak detection that continues no track) and the ids deleted
        now. Only ``strong`` detections (default: all) start new tracks. An unassigned detection
        within FRAGMENT_GAP of a confirmed track's detection gets that track's id (a piece of the
        same person: the caller merges them) instead of starting a track that would later take
        the person over. ``small`` detections (too few points to classify; never strong) are offered
        last, to the confirmed tracks that got nothing else (a far person's returns, not a piece of
        background beside a person whose track is a little off)."""
        c = self.cfg
        strong = np.ones(len(centroids), bool) if strong is None else np.asarray(strong, bool)
        small = np.zeros(len(centroids), bool) if small is None else np.asarray(small, bool)
        pred = self.predict(stamp, min_hits=1)                                          # every track
        assign: dict[int, int] = {}

        def associate(ks: list[int], smalls: bool = False) -> None:
            """Hungarian among tracks ``ks`` and the detections not yet taken (the small ones, or the
            others), gated before assigning (the best assignment among the pairs inside the gate)."""
            ds = [d for d in range(len(centroids)) if d not in assign and small[d] == smalls]
            if not ks or not ds:
                return
            cost = np.linalg.norm(pred[ks][:, None, :] - centroids[ds][None, :, :], axis=2)
            for i, j in _gated_assignment(cost, np.full(len(ks), c.track_gate)):
                assign[ds[j]] = ks[i]

        # Confirmed tracks first, together with the lost tracks that may be taken up again (a lost
        # track close to where its person reappears keeps a coasting neighbour's track off them),
        # then the confirmed tracks that got nothing (a wider gate, _coast), then tentative tracks: a
        # tentative track (often a piece or a duplicate of a tracked person) never takes a person
        # from the confirmed track that is theirs.
        self._first_association(stamp, [k for k, t in enumerate(self.tracks) if t.hits >= c.min_hits],
                                pred, centroids, strong, small, assign)
        # a confirmed track's assigned detection this scan: an unassigned detection next to it is a
        # piece of the same person (an arm or a leg that the grid cut off), not a new track
        held = {int(d): self.tracks[k] for d, k in assign.items()}
        self._coast(stamp, centroids, strong, assign, held)
        held = {int(d): self.tracks[k] for d, k in assign.items()}
        associate([k for k, t in enumerate(self.tracks) if t.hits < c.min_hits])
        taken = set(assign.values())
        associate([k for k, t in enumerate(self.tracks) if t.hits >= c.min_hits and k not in taken], smalls=True)
        # a tentative track fed by such a piece is the same person: the piece goes to them, the
        # tentative track ends (else it is confirmed on the piece and splits the person in two)
        dropped: set[int] = set()
        for d, k in list(assign.items()):
            t = self.tracks[k]
            if t.hits < c.min_hits and self._piece_of(centroids, d, held) is not None:
                del assign[d]
                dropped.add(t.tid)
        ids: list[int | None] = []
        seen = set()
        for d, xy in enumerate(centroids):
            if d not in assign and (near := self._piece_of(centroids, d, held)) is not None:
                ids.append(held[near].tid)
                continue
            if d in assign:
                t = self.tracks[assign[d]]
                dt = stamp - t.stamp
                if dt > 0:
                    meas_vel = (xy - t.pos) / dt
                    t.vel = 0.5 * t.vel + 0.5 * meas_vel
                t.pos, t.stamp = xy.copy(), stamp
                t.trail = [e for e in t.trail if e[0] >= stamp - 2 * self.STILL_S] + [(stamp, t.pos)]
                t.hits += 1 if strong[d] or t.hits >= c.min_hits else 0   # confirmed on person-like shapes only
                t.strong = stamp if strong[d] else t.strong
                t.missed = 0
            elif not strong[d]:
                ids.append(None)
                continue
            elif len(self.tracks) >= self.MAX_TRACKS:   # full: the tracks held keep their people
                self.refused += 1
                ids.append(None)
                continue
            elif (t := self._revive(stamp, xy)) is None:
                t = _Track(self.next_id, xy.copy(), np.zeros(2), stamp, strong=stamp)
                self.next_id += 1
                self.tracks.append(t)
            seen.add(t.tid)
            ids.append(t.tid if t.hits >= c.min_hits else None)
        lost = []
        keep = []
        for t in self.tracks:
            if t.tid not in seen:
                t.missed += 1
            if t.missed > c.max_missed or t.tid in dropped:
                lost.append(t.tid)
                if t.hits >= c.min_hits:
                    self.lost.append(t)
                    if len(self.lost) > self.MAX_TRACKS:
                        self.lost.pop(0)                 # the oldest loss (appended in time order)
                        self.lost_evicted += 1
            else:
                keep.append(t)
        self.tracks = keep
        return ids, lost


class Perception:
    """Scan in, tracked people out. Stateful: floor, background and tracks persist across scans;
    :meth:`reset` forgets them (a bag looping, a new scene)."""

    def __init__(self, cfg: PerceptionConfig = PerceptionConfig(), classifier: PersonClassifier | None = None) -> None:
        self.cfg = cfg
        self.classifier = classifier or PersonClassifier(cfg.classifier or None)
        self.reset()

    def reset(self) -> list[int]:
        self.background = RangeBackground(self.cfg) if self.cfg.background else None
        self.floor: FloorPlane | None = (FloorPlane.horizontal(self.cfg.ground_z)
                                         if self.cfg.ground_z is not None else None)
        self._floor_stamp = -np.inf
        self._el_min = -math.pi / 2                     # lowest elevation the LiDAR sees (rad), from the scans
        self._learn_tracks: set[int] = set()
        if hasattr(self, "tracker"):
            lost = self.tracker.reset()                 # the same tracker: new ids continue after the old
        else:
            lost, self.tracker = [], Tracker(self.cfg)
        self.last_stamp: float | None = None
        self.scan_period = 0.1
        return lost

    @property
    def ground(self) -> float | None:
        """The floor's height below the sensor along the sensor's z (m, negative), None until found."""
        return None if self.floor is None else -self.floor.offset / float(self.floor.normal[2])

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
        p, h_all = (pts, horiz) if len(finite) == len(pts) else (pts[finite], horiz[finite])
        if c.ground_z is None and (self.floor is None or stamp - self._floor_stamp >= c.floor_refit_s):
            found = fit_floor(p)
            if found is not None:
                self.floor, self._floor_stamp = found, stamp
            if len(p):                                   # the lowest beam: where the field of view cuts people off
                sub = p[:: max(1, len(p) // 4000)]
                self._el_min = float(np.percentile(np.arctan2(sub[:, 2], np.hypot(sub[:, 0], sub[:, 1])), 0.5))
        learning = self.background is not None and not self.background.learned
        if self.floor is None:                           # no floor seen yet (an empty or sparse start)
            lost += self.tracker.update(stamp, np.zeros((0, 2)))[1]
            return ScanResult(stamp, [], learning, 0, 0, lost, time.perf_counter() - t0)
        height = self.floor.heights(p)
        cand = ((h_all >= c.min_range) & (h_all <= c.max_range) & (p[:, 2] >= c.min_z) & (p[:, 2] <= c.max_z)
                & (height > c.ground_clearance) & (height < c.max_top))
        if self.background is not None:
            # The background sees every finite return, not only the candidates: a surface flickering
            # across the ROI's edge must not look new.
            pix = self.background.pixels(p, h_all)
            rng = np.sqrt(h_all * h_all + p[:, 2] * p[:, 2])
            if not learning:
                cand &= self.background.foreground(pix, rng)
        ci = np.flatnonzero(cand)                         # candidate points, indices into p
        people: list[Person] = []
        n_clusters = 0
        person_pt = np.zeros(len(ci), bool)              # candidates in person-like clusters
        if len(ci):
            level = self.floor.level(p[ci])
            hc = height[ci]
            labels, n_clusters = self._cluster(level)
            cut = self._cut_off(p[ci])
            pred = self.tracker.predict(stamp)
            clusters = self._gate(hc, level, cut, self._split(level, labels, n_clusters, pred),
                                  self.tracker.down_references(stamp, pred), self.tracker.sparse_references(stamp))
            scores = self._score(level, hc, cut, clusters, finite[ci])
            clusters, scores = self._split_side_by_side(level, hc, cut, clusters, scores, finite[ci])
            thr = self.classifier.threshold
            # a low cluster passed the gate only beside a confirmed track (a person who went down): the
            # shape classifier, trained on upright people, does not judge it; it continues that track
            down = np.array([float(hc[m].max()) < c.min_top for m in clusters], bool)
            if down.any():
                scores = np.where(down, np.maximum(scores, thr), scores)
            # fewer points than the classifier judges, or thinner than a person (passed the gate beside a
            # track: a far person, a head over someone's shoulder): continues that track only
            small = np.array([len(m) < c.min_points or self._thin(hc[m], bool(cut[m].any())) for m in clusters], bool)
            likely = (scores >= 0.5 * thr) | small        # may continue a track; also kept out of the background
            dets = [m for m, ok in zip(clusters, likely) if ok]
            det_scores = np.where(small, np.minimum(scores, 0.5 * thr), scores)[likely]
            centroids = np.array([level[m].mean(0) for m in dets], np.float64).reshape(-1, 2)
            ids, lost_now = self.tracker.update(stamp, centroids, (det_scores >= thr) & ~small[likely], small[likely])
            lost += lost_now
            parts: dict[int, list[tuple[np.ndarray, float]]] = {}
            for tid, m, sc in zip(ids, dets, det_scores):
                person_pt[m] = True                       # tentative tracks are not absorbed either
                if tid is not None:
                    parts.setdefault(tid, []).append((m, float(sc)))
            for tid, got in parts.items():                # a person and the pieces the tracker gave them
                m = got[0][0] if len(got) == 1 else np.concatenate([g[0] for g in got])
                q = p[ci[m]]
                people.append(Person(tid, finite[ci[m]], q, q.mean(0), None, max(g[1] for g in got)))
            # every person's frame in one batched FPS (identical to normalise_frame, one loop per scan)
            for person, frame in zip(people, normalise_frames([x.points for x in people], c.points_per_frame)):
                person.normalised = frame
        else:
            lost += self.tracker.update(stamp, np.zeros((0, 2)))[1]
        if self.background is not None:
            if learning:
                mask = np.zeros(len(p), bool)
                mask[ci[person_pt]] = True
                self.background.learn(pix, rng, stamp, mask)
                if self.background.learned:                 # the people who were there while it learned
                    self._learn_tracks = {t.tid for t in self.tracker.tracks}
            else:
                if self._learn_tracks and self.background.pending.any() and len(ci):
                    # returns on pixels those people hid, farther than 0.6 m from where they are now
                    away = np.ones(len(ci), bool)
                    pred = self.tracker.predict(stamp, min_hits=1, ids=self._learn_tracks)
                    if len(pred):                             # ``level``: the candidates' floor coordinates
                        away = np.min(np.linalg.norm(level[:, None, :] - pred[None], axis=2), axis=1) > 0.6
                    self.background.reveal(pix[ci[away]], rng[ci[away]])
                out = ci[~person_pt]
                scans = max(1, int(round(c.background_absorb_s / self.scan_period)))
                self.background.absorb(pix[out], rng[out], scans)
        return ScanResult(stamp, people, learning, int(len(ci)), int(n_clusters), lost, time.perf_counter() - t0)

    def _cluster(self, level: np.ndarray) -> tuple[np.ndarray, int]:
        cell = self.cfg.cell
        ij = np.floor(level / cell).astype(np.int64)
        origin = ij.min(0)
        ij -= origin
        shape = tuple(int(v) + 1 for v in ij.max(0))
        grid = np.zeros(shape, bool)
        grid[ij[:, 0], ij[:, 1]] = True
        lab, n = ndimage.label(grid, structure=np.ones((3, 3), bool))
        # each cluster's footprint diagonal (m) from its grid bounding box: structure far larger than
        # a few people (walls, long furniture) is dropped before any per-point work
        boxes = ndimage.find_objects(lab)
        self._diag = np.array([math.hypot(b[0].stop - b[0].start, b[1].stop - b[1].start) * cell for b in boxes])
        self._grid, self._origin = lab, origin
        return lab[ij[:, 0], ij[:, 1]] - 1, n           # (F,) 0..n-1

    def _split(self, level: np.ndarray, labels: np.ndarray, n: int, predicted: np.ndarray) -> list[np.ndarray]:
        """Point indices per cluster; a cluster holding the predicted positions of several tracks
        (people standing close together) is split among them by nearest centre (2-means steps)."""
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n + 1))
        out = []
        held = np.zeros(n + 1, np.int64)                 # predicted tracks on (or next to) each cluster's cells
        if len(predicted):
            ij = np.floor(predicted / self.cfg.cell).astype(np.int64) - self._origin
            labs = set()
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    q = ij + (di, dj)
                    ok = np.all((q >= 0) & (q < self._grid.shape), axis=1)
                    labs |= {(r, int(v)) for r, v in zip(np.flatnonzero(ok), self._grid[q[ok, 0], q[ok, 1]]) if v}
            for _, v in labs:
                held[v] += 1
        for k in range(n):
            if self._diag[k] > self.cfg.max_footprint * max(int(held[k + 1]), 1) + 0.6:
                continue                                  # larger than its people side by side: structure
            members = np.sort(order[bounds[k]:bounds[k + 1]])
            if len(predicted) >= 2 and len(members) >= 2 * self.cfg.min_points:
                xy = level[members].astype(np.float64)
                lo, hi = xy.min(0) - 0.3, xy.max(0) + 0.3
                inside = predicted[np.all((predicted >= lo) & (predicted <= hi), axis=1)]
                if len(inside) >= 2 and float(np.ptp(self._long_axis(xy))) >= self.SPLIT_MIN_SPAN:   # narrower: one person
                    centres = inside.copy()
                    for _ in range(3):
                        near = np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(2), axis=1)
                        centres = np.array([xy[near == j].mean(0) if (near == j).any() else centres[j]
                                            for j in range(len(centres))])
                    out.extend(members[near == j] for j in range(len(centres)) if (near == j).any())
                    continue
            out.append(members)
        return out

    CUT_MARGIN = math.radians(2.0)        # a point this close to the lowest beam is at the field of view's edge
    CUT_MIN_EXTENT = 0.12                 # m: the least visible height of a person cut off by the field of view

    def _cut_off(self, pts: np.ndarray) -> np.ndarray:
        """(n,) points seen by the lowest beams: a person close to a narrow-FOV LiDAR (a VLP-16 at 2 m
        sees the floor only beyond 7.5 m) shows only their head and shoulders there."""
        return np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])) < self._el_min + self.CUT_MARGIN

    SPLIT_MIN_SPAN = 0.75      # m along the cluster's long axis before it may hold two people
    SPLIT_MIN_DIP = 0.2        # m: the dip between two heads (shoulders, the gap between two people)
    SPLIT_MIN_GAP = 0.4        # m between the two head peaks

    def _split_side_by_side(self, level: np.ndarray, height: np.ndarray, cut: np.ndarray, clusters: list,
                            scores: np.ndarray, scan_idx: np.ndarray) -> tuple[list, np.ndarray]:
        """People standing touching with no track to separate them (together from the first scan):
        a wide cluster whose height profile along its long axis has two peaks (heads) with a dip
        between is cut at the dip, kept cut only when both parts pass the gates and score as people
        (a raised arm is not a second person). Repeated, so three in a row become three."""
        out, out_scores = [], []
        work = list(zip(clusters, scores))
        while work:
            members, score = work.pop()
            parts = self._cut_at_dip(level[members], height[members])
            if parts is not None:
                halves = [members[m] for m in parts]
                # two people each stand on the floor with a share of the points; an arm has no legs
                whole = all(len(m) >= 0.1 * len(members) and (height[m].min() < 0.6 or cut[m].any())
                            for m in halves)
                gated = self._gate(height, level, cut, halves) if whole else []
                if len(gated) == 2:
                    sc = self._score(level, height, cut, gated, scan_idx)
                    if (sc >= self.classifier.threshold).all():
                        work.extend(zip(gated, sc))
                        continue
            out.append(members)
            out_scores.append(score)
        return out, np.asarray(out_scores, np.float32)

    @staticmethod
    def _long_axis(xy: np.ndarray) -> np.ndarray:
        """(n,) floor points' coordinates along their long (principal) axis, m."""
        c = xy.astype(np.float64) - xy.mean(0)
        return c @ np.linalg.eigh(c.T @ c)[1][:, 1]

    def _cut_at_dip(self, xy: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Masks of the two sides of the deepest dip between two head peaks, or None."""
        u = self._long_axis(xy)
        if u.max() - u.min() < self.SPLIT_MIN_SPAN:
            return None
        step = 0.1
        b = np.floor((u - u.min()) / step).astype(np.int64)
        top = np.full(int(b.max()) + 1, -np.inf)
        np.maximum.at(top, b, h)
        valid = np.isfinite(top)
        win = int(round(self.SPLIT_MIN_GAP / step / 2))
        peaks = [i for i in np.flatnonzero(valid & (top > 1.0))
                 if top[i] >= top[max(0, i - win):i + win + 1].max()]
        if len(peaks) < 2:
            return None
        best = None
        for a, z in zip(peaks[:-1], peaks[1:]):
            if (z - a) * step < self.SPLIT_MIN_GAP:
                continue
            k = a + int(np.argmin(np.where(valid[a:z + 1], top[a:z + 1], -1.0)))   # an empty bin: a gap, the deepest dip
            dip = min(top[a], top[z]) - (top[k] if valid[k] else 0.0)
            if dip >= self.SPLIT_MIN_DIP and (best is None or dip > best[0]):
                best = (dip, k)
        if best is None:
            return None
        left = b < best[1]
        return left, ~left

    DOWN_MIN_EXTENT = 0.05                # m: the least visible height of a person lying on the floor
    DOWN_MIN_LENGTH = 0.6                 # m: their least footprint diagonal (a body's length, partly hidden; not a cut-off leg)

    SPARSE_MIN_POINTS = 4                 # a cluster this small may continue a track (Tracker.sparse_references)
    SPARSE_GATE = 0.5                     # m from such a track's predicted position

    def _thin(self, h: np.ndarray, cut: bool) -> bool:
        """An upright cluster with less vertical extent than a person's (``min_extent``; less when
        ``cut`` off by the field of view): it passes the gate only beside a track (:meth:`_gate`)."""
        return float(h.max()) >= self.cfg.min_top and \
            float(h.max() - h.min()) < (self.CUT_MIN_EXTENT if cut else self.cfg.min_extent)

    def _gate(self, height: np.ndarray, level: np.ndarray, cut: np.ndarray,
              clusters: list[np.ndarray], tracked: np.ndarray | None = None,
              sparse: np.ndarray | None = None) -> list[np.ndarray]:
        """Loose size gates before the classifier: enough points, a person's height and footprint.
        A cluster cut off at the bottom by the field of view needs less vertical extent. A low
        cluster (top between ``min_top_down`` and ``min_top``: a person fallen or lying on the floor)
        passes only within ``down_gate`` of a position in ``tracked`` (Tracker.down_references). A
        cluster with fewer than ``min_points`` (at least SPARSE_MIN_POINTS), or thinner than a person
        (:meth:`_thin`), passes only within SPARSE_GATE of a position in ``sparse``
        (Tracker.sparse_references: a far, sparse person; a head over someone's shoulder)."""
        c = self.cfg
        out = []
        for members in clusters:
            def beside_track() -> bool:
                return len(members) >= self.SPARSE_MIN_POINTS and sparse is not None and len(sparse) > 0 and \
                    float(np.min(np.linalg.norm(sparse - level[members].mean(0), axis=1))) <= self.SPARSE_GATE
            if len(members) < c.min_points and not beside_track():
                continue
            h = height[members]
            top, bottom = float(h.max()), float(h.min())
            is_cut = bool(cut[members].any())
            min_extent = self.CUT_MIN_EXTENT if is_cut else c.min_extent
            if self._thin(h, is_cut) and beside_track():
                min_extent = 0.0              # a head and shoulders over someone's shoulder, beside its track
            if top < c.min_top and top >= c.min_top_down and top - bottom >= self.DOWN_MIN_EXTENT \
                    and tracked is not None and len(tracked):
                xy = level[members]
                lo, hi = xy.min(0), xy.max(0)
                near = np.min(np.linalg.norm(tracked - xy.mean(0), axis=1)) <= c.down_gate
                if not near or math.hypot(hi[0] - lo[0], hi[1] - lo[1]) < self.DOWN_MIN_LENGTH:
                    continue
            elif top - bottom < min_extent or not (c.min_top <= top <= c.max_top):
                continue
            xy = level[members]
            lo, hi = xy.min(0), xy.max(0)
            if math.hypot(hi[0] - lo[0], hi[1] - lo[1]) > c.max_footprint:
                continue
            out.append(members)
        return out

    def _score(self, level: np.ndarray, height: np.ndarray, cut: np.ndarray, clusters: list[np.ndarray],
               scan_idx: np.ndarray | None = None) -> np.ndarray:
        """Person probability per cluster (the shape classifier). ``scan_idx`` maps the candidates
        to the scan's points (for training-data collection, which labels clusters by gt_person)."""
        if not clusters:
            return np.zeros(0, np.float32)
        feats = np.stack([cluster_features(level[m], height[m], float(np.linalg.norm(level[m].mean(0))),
                                           bool(cut[m].any())) for m in clusters])
        return self.classifier(feats)
