"""Rolling buffers of the live pipeline, ROS-free (numpy only): scans subsampled to the model's
frame rate by stamp, per-track 24-frame point windows, and per-wearer IMU streams resampled at the
windows' scan stamps. Stamps are integer nanoseconds (exact keys); durations are seconds.

Policy (explicit, tested):
- Scans: selected on a fixed grid of model periods (FrameSelector), so any LiDAR rate averages
  the model's 10 fps (a 20 Hz LiDAR feeds every other scan). An equal stamp is a ``duplicate``
  (dropped); an earlier stamp is ``backwards`` (a bag looping or a clock reset): the caller resets
  every buffer and the scan starts afresh.
- Gaps: up to ``max_gap`` missing periods between selected scans (a lost scan), or scans in which
  perception misses a track, are filled by repeating the track's previous frame at the missing
  period's stamp; a longer gap clears the buffers (a window always spans 24 periods = 2.4 s).
  A track is ready only when its newest frame was observed, not filled.
- IMU: samples per site in stamp order; NaN/Inf or a zero quaternion is ``invalid``; an equal
  stamp is a ``duplicate``; an earlier one resets that site. A window needs every site to cover
  the window's stamps, with the newest sample at most ``max_stale`` seconds older than the newest
  scan. Orientations are interpolated by slerp, other channels linearly (despite_core.data.resample).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from despite_core.data.imu_layout import ImuLayout, ImuLayoutError
from despite_core.data.resample import resample_imu
from despite_core.data.rotations import quat_to_matrix

NS = 1_000_000_000
GRAVITY = 9.81
# Tracks held at once by every per-track store of the live pipeline: perception's tracker and its
# re-identification list, TrackBuffers, the streaming encoder's tube cache, the fusion filters (and
# matching_node's batches). A flood of person-like clusters or track ids then costs bounded memory;
# what is turned away or evicted is counted by store (HarPipeline.cap_counts, har_node's /diagnostics).
MAX_TRACKS = 64


def stamp_ns(t) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time (rclpy or rosbags message)."""
    return int(t.sec) * NS + int(t.nanosec)


@dataclass(frozen=True)
class BufferConfig:
    fps: float = 10.0                 # the bundle's frame rate
    window: int = 24                  # the bundle's window length, frames
    tolerance: float = 0.25           # fraction of a period a scan may come early
    max_gap: int = 2                  # missing periods filled by repetition
    max_stale: float = 0.15           # s, newest IMU sample vs newest scan
    imu_horizon: float = 6.0          # s of IMU kept per site
    max_jump: float = 5.0             # s: a scan this far ahead of the last is held until confirmed
    imu_max_samples: int = 4096       # per site, whatever the stamps say (6 s at 680 Hz)
    imu_reorder: float = 0.5          # s: an IMU sample this much older than the newest is put in order
    max_tracks: int = MAX_TRACKS      # track windows held; when full the stalest goes (see TrackBuffers)

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.window < 2:
            raise ValueError(f"fps must be > 0 and window >= 2, got {self.fps}, {self.window}")
        if not 0 <= self.tolerance < 1 or self.max_gap < 0 or self.max_stale < 0:
            raise ValueError("need 0 <= tolerance < 1, max_gap >= 0, max_stale >= 0")
        if self.max_jump <= (self.max_gap + 1) / self.fps or self.imu_max_samples < 16 or self.imu_reorder < 0:
            raise ValueError("need max_jump longer than max_gap periods, imu_max_samples >= 16, imu_reorder >= 0")
        if self.max_tracks < 1:
            raise ValueError(f"max_tracks must be >= 1, got {self.max_tracks}")
        if self.imu_horizon < self.window / self.fps + self.max_stale:
            raise ValueError(f"imu_horizon {self.imu_horizon} s is shorter than a window ({self.window / self.fps} s)")

    @property
    def period_ns(self) -> int:
        return int(round(NS / self.fps))


class FrameSelector:
    """Decides which scans feed the model, by stamp, on a fixed grid of model periods anchored at
    the first selected scan: the first scan at or after each grid point (less ``tolerance`` of a
    period) is selected, so any LiDAR rate averages the model's rate (a 20 Hz LiDAR feeds every
    other scan, a 15 Hz one alternates 133 / 67 ms) and one late scan does not shift the grid."""

    def __init__(self, cfg: BufferConfig) -> None:
        self.cfg = cfg
        self.last: int | None = None
        self.origin = 0
        self.next_k = 0
        self.pending: int | None = None          # a scan far ahead of the stream, not yet confirmed

    def offer(self, stamp_ns: int) -> str:
        """``selected``, ``skipped`` (before the next grid point), ``duplicate``, ``backwards`` (the
        caller resets; the scan is then selected as the first of a new run), ``bad_stamp`` (negative:
        dropped), ``held`` (more than ``max_jump`` ahead of the last scan: dropped unless the next
        scan confirms the new time, an outlier stamp otherwise) or ``jump`` (the next scan confirmed
        it: the caller resets, like ``backwards``, and this scan starts the new run)."""
        period, early = self.cfg.period_ns, self.cfg.tolerance * self.cfg.period_ns
        if stamp_ns < 0:
            return "bad_stamp"
        if self.last is None:
            self.last, self.origin, self.next_k = stamp_ns, stamp_ns, 1
            return "selected"
        if stamp_ns == self.last:
            return "duplicate"
        if stamp_ns < self.last:
            self.reset()
            self.offer(stamp_ns)
            return "backwards"
        jump = int(self.cfg.max_jump * NS)
        if stamp_ns - self.last > jump:
            if self.pending is not None and 0 < stamp_ns - self.pending <= jump:
                self.reset()                          # two scans agree on the new time: a real jump
                self.offer(stamp_ns)
                return "jump"
            self.pending = stamp_ns
            return "held"
        self.pending = None                           # the stream went on: the held scan was an outlier
        if stamp_ns < self.origin + self.next_k * period - early:
            return "skipped"
        self.last = stamp_ns
        self.next_k = int((stamp_ns - self.origin + early) // period) + 1
        return "selected"

    def reset(self) -> None:
        self.last = None
        self.pending = None


@dataclass
class _Frame:
    stamp: int
    points: np.ndarray               # (P, 3) normalised
    centroid: np.ndarray             # (3,) sensor frame
    extra: object = None             # caller's per-frame payload (e.g. ground-truth person counts)
    observed: bool = True
    extent: np.ndarray = field(default_factory=lambda: np.full(2, np.nan, np.float32))   # (height, width) m, data.body_motion


@dataclass
class Window:
    """A ready window of one track."""

    track_id: int
    stamps: np.ndarray               # (T,) int64 ns, increasing
    points: np.ndarray               # (T, P, 3) float32
    centroids: np.ndarray            # (T, 3)
    extras: list = field(default_factory=list)
    filled: int = 0                  # frames repeated to cover gaps
    extents: np.ndarray | None = None   # (T, 2) raw cloud height and horizontal extent (NaN: not given)


class TrackBuffers:
    """Per-track rolling windows at the selected scans' stamps, at most ``cfg.max_tracks`` tracks: a
    new track when full evicts the stalest one not observed in this scan (most scans missed, then
    the lowest id; returned with the dropped ones), or is refused when every track held was observed."""

    def __init__(self, cfg: BufferConfig) -> None:
        self.cfg = cfg
        self.tracks: dict[int, deque[_Frame]] = {}
        self.missed: dict[int, int] = {}
        self.last: int | None = None
        self.filled_total = 0            # frames repeated (lost scans, missed detections)
        self.missing_total = 0           # model periods without a selected scan (dropped or lost scans)
        self.evicted = 0                 # tracks dropped to make room (max_tracks held)
        self.refused = 0                 # observed frames of new tracks turned away (max_tracks observed)

    def reset(self) -> None:
        self.tracks.clear()
        self.missed.clear()
        self.last = None

    def push(self, stamp_ns: int, observed: dict[int, tuple]) -> list[int]:
        """Add a selected scan: ``observed`` maps track id -> (normalised points, centroid, extra) or
        (normalised points, centroid, extra, extent): the raw cloud's (height, horizontal) extent
        (data.body_motion.cloud_extent), which a head with body-motion input needs.
        Returns the ids whose buffers were dropped (gone for more than ``max_gap`` scans)."""
        period = self.cfg.period_ns
        if self.last is not None:
            if stamp_ns <= self.last:
                raise ValueError(f"stamps must increase: {stamp_ns} after {self.last} (use FrameSelector, reset on 'backwards')")
            missing = int(round((stamp_ns - self.last) / period)) - 1
            self.missing_total += max(missing, 0)
            if missing > self.cfg.max_gap:
                dropped = list(self.tracks)
                self.reset()
                self.last = stamp_ns
                self._add(stamp_ns, observed)
                return dropped
            for k in range(1, missing + 1):           # lost scans: every track repeats its last frame
                filler = self.last + k * period
                for dq in self.tracks.values():
                    self._repeat(dq, filler)
        self.last = stamp_ns
        return self._add(stamp_ns, observed)

    def _repeat(self, dq: deque, stamp: int) -> None:
        prev = dq[-1]
        # no extent: data.body_motion fills an unobserved frame from the nearest observed one, as for the store
        dq.append(_Frame(stamp, prev.points, prev.centroid, prev.extra, observed=False))
        self.filled_total += 1

    def _add(self, stamp_ns: int, observed: dict) -> list[int]:
        dropped = []
        for tid in list(self.tracks):
            if tid not in observed:
                self.missed[tid] = self.missed.get(tid, 0) + 1
                if self.missed[tid] > self.cfg.max_gap:
                    dropped.append(tid)
                    del self.tracks[tid], self.missed[tid]
                else:
                    self._repeat(self.tracks[tid], stamp_ns)
        for tid, (pts, centroid, extra, *rest) in observed.items():
            if tid not in self.tracks and len(self.tracks) >= self.cfg.max_tracks:
                stale = [t for t in self.tracks if t not in observed]
                if not stale:
                    self.refused += 1
                    continue
                gone = max(stale, key=lambda t: (self.missed.get(t, 0), -t))
                del self.tracks[gone], self.missed[gone]
                dropped.append(gone)
                self.evicted += 1
            dq = self.tracks.setdefault(tid, deque(maxlen=self.cfg.window))
            extent = np.asarray(rest[0], np.float32) if rest else np.full(2, np.nan, np.float32)
            dq.append(_Frame(stamp_ns, np.asarray(pts, np.float32), np.asarray(centroid, np.float32), extra, extent=extent))
            self.missed[tid] = 0
        return dropped

    def drop(self, track_id: int) -> None:
        self.tracks.pop(track_id, None)
        self.missed.pop(track_id, None)

    def ready(self) -> list[Window]:
        """Full windows of the tracks observed in the newest scan, in track-id order."""
        out = []
        for tid in sorted(self.tracks):
            dq = self.tracks[tid]
            if len(dq) < self.cfg.window or not dq[-1].observed or dq[-1].stamp != self.last:
                continue
            frames = list(dq)
            out.append(Window(tid, np.array([f.stamp for f in frames], np.int64), np.stack([f.points for f in frames]),
                              np.stack([f.centroid for f in frames]), [f.extra for f in frames],
                              sum(not f.observed for f in frames), np.stack([f.extent for f in frames])))
        return out


MAX_GYRO = 2000.0       # rad/s accepted from sensor_msgs/Imu
MAX_ACC = 10_000.0      # m/s^2 (about 1,000 g)


def imu_message_values(orientation_wxyz, angular_velocity, linear_acceleration) -> np.ndarray | None:
    """(10,) float64 [qw, qx, qy, qz, gx, gy, gz, ax, ay, az] of one sensor_msgs/Imu reading, or None
    when a value is not finite, beyond MAX_GYRO / MAX_ACC, or the quaternion has (near) zero norm."""
    v = np.array([*orientation_wxyz, *angular_velocity, *linear_acceleration], np.float64)
    if v.shape != (10,) or not np.all(np.isfinite(v)):
        return None
    # beyond any MEMS IMU's full scale (+-16 g, +-2000 deg/s are common; these bounds are 60x that):
    # a corrupt message, not a motion
    if np.abs(v[4:7]).max() > MAX_GYRO or np.abs(v[7:10]).max() > MAX_ACC:
        return None
    scale = np.abs(v[:4]).max()                      # normalise without overflow for huge components
    if not 1e-6 < scale < 1e6:
        return None
    q = v[:4] / scale
    v[:4] = q / np.linalg.norm(q)
    return v


def imu_values_of(msg) -> np.ndarray | None:
    """:func:`imu_message_values` of a sensor_msgs/Imu message (rclpy or rosbags)."""
    o, g, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
    return imu_message_values((o.w, o.x, o.y, o.z), (g.x, g.y, g.z), (a.x, a.y, a.z))


def imu_layout_check(layout: ImuLayout) -> None:
    """The conversions sensor_msgs/Imu -> ``layout`` this runtime performs; anything else is an error."""
    if layout.world != "z_up_arbitrary_heading":
        raise ImuLayoutError(f"the bundle's IMU world frame {layout.world!r} cannot be produced from sensor_msgs/Imu "
                             "(gravity-aligned, z up, arbitrary heading)")
    unknown = [c for c in layout.channels if c not in ("rotmat", "quat", "acc", "gyro")]
    if unknown:
        raise ImuLayoutError(f"the bundle's IMU channels {unknown} cannot be produced from sensor_msgs/Imu")


def to_layout(values: np.ndarray, layout: ImuLayout) -> np.ndarray:
    """(N, 10) Imu values -> (N, layout.width) channels of one site, converting the acceleration to
    the layout's frame and gravity convention (sensor_msgs/Imu: sensor frame, specific force)."""
    q, gyro, acc = values[:, :4], values[:, 4:7], values[:, 7:10]
    rot = quat_to_matrix(q)                                                   # (N, 3, 3) sensor -> world
    if layout.gravity == "removed":
        acc = acc - np.einsum("nji,j->ni", rot, np.array([0.0, 0.0, GRAVITY]))   # R^T g_up, sensor frame
    if layout.acc_frame == "world":
        acc = np.einsum("nij,nj->ni", rot, acc)
    parts = {"rotmat": rot.reshape(-1, 9), "quat": q, "acc": acc, "gyro": gyro}
    return np.concatenate([parts[c] for c in layout.channels], axis=1).astype(np.float32)


class WearerImu:
    """One wearer's IMU sites, resampled at scan stamps into the bundle's layout."""

    def __init__(self, layout: ImuLayout, cfg: BufferConfig) -> None:
        imu_layout_check(layout)
        self.layout = layout
        self.cfg = cfg
        self.site_layout = ImuLayout(sites=(layout.sites[0],), channels=layout.channels, acc_frame=layout.acc_frame,
                                     gravity=layout.gravity, world=layout.world)
        self.samples: dict[str, deque[tuple[int, np.ndarray]]] = {s: deque() for s in layout.sites}

    def push(self, site: str, stamp_ns: int, values: np.ndarray | None) -> str:
        """``ok``; ``late`` (older than the newest sample by at most ``imu_reorder``: put in stamp
        order, as a sample delayed on the network is); ``invalid``; ``duplicate``; ``backwards``
        (older by more than that: time went back, the site's history is cleared first). The history
        is bounded by time (``imu_horizon`` before the newest sample) and by count
        (``imu_max_samples``), whatever the stamps say."""
        if site not in self.samples:
            raise KeyError(f"site {site!r} is not in the bundle's IMU layout {list(self.layout.sites)}")
        if values is None or stamp_ns < 0:
            return "invalid"
        dq = self.samples[site]
        status = "ok"
        if dq and stamp_ns == dq[-1][0]:
            return "duplicate"
        if dq and stamp_ns < dq[-1][0]:
            if dq[-1][0] - stamp_ns <= int(self.cfg.imu_reorder * NS):
                i = len(dq)
                while i > 0 and dq[i - 1][0] > stamp_ns:
                    i -= 1
                if i > 0 and dq[i - 1][0] == stamp_ns:
                    return "duplicate"
                dq.insert(i, (stamp_ns, values))
                status = "late"
            else:
                dq.clear()
                status = "backwards"
        if status != "late":
            dq.append((stamp_ns, values))
        newest, horizon = dq[-1][0], int(self.cfg.imu_horizon * NS)
        while dq and dq[0][0] < newest - horizon:
            dq.popleft()
        while len(dq) > self.cfg.imu_max_samples:
            dq.popleft()
        return status

    def window(self, stamps_ns: np.ndarray) -> tuple[np.ndarray | None, str]:
        """((T, sites * width) float32, "") or (None, why not) for the scan stamps of a window."""
        stamps = np.asarray(stamps_ns, np.int64)
        base = int(stamps[0])
        dst = (stamps - base) / NS
        out = np.empty((len(stamps), len(self.layout.sites), self.layout.width), np.float32)
        for s, site in enumerate(self.layout.sites):
            dq = self.samples[site]
            if len(dq) < 2:
                return None, f"no data from {site}"
            first, last = dq[0][0], dq[-1][0]
            if first > stamps[0]:
                return None, f"{site}: history starts after the window"
            if (int(stamps[-1]) - last) / NS > self.cfg.max_stale:
                return None, f"{site}: newest sample {(int(stamps[-1]) - last) / NS:.3f} s older than the scan"
            t = np.array([x[0] for x in dq], np.int64)
            vals = to_layout(np.stack([x[1] for x in dq]), self.site_layout)
            lo = max(int(np.searchsorted(t, stamps[0], "right")) - 1, 0)
            hi = int(np.searchsorted(t, stamps[-1], "left")) + 1
            gap = np.diff(t[lo:hi]).max(initial=0) / NS
            if gap > 2 * self.cfg.max_stale:
                return None, f"{site}: {gap:.2f} s without samples inside the window"
            src_t = (t[lo:hi] - base) / NS
            out[:, s] = resample_imu(src_t, vals[lo:hi, None, :], self.site_layout, dst,
                                     max_extrapolation=self.cfg.max_stale)[:, 0]
        return out.reshape(len(stamps), -1), ""
