"""Temporal fusion of a track's window scores, and the activity events it produces (ROS-free).

Successive windows of one track overlap by 21 of 24 frames, so their independent labels flicker
while sharing almost all their evidence. :class:`ActivityFusion` runs, per track, a forward
filter (an HMM over the label space): the activity persists from one window to the next except
for a switch at ``switch_rate`` per second (uniform over the other labels), and each window's
scores, raised to ``sharpness`` (< 1: overlapping windows are not independent evidence), weigh
the prediction. The fused label is the filter's most probable label; its confidence is that
posterior. The filter is causal: it never waits for later windows, so its latency is the
evidence it needs to overturn the switch prior (measured in the README: how long after a
change of activity the fused label follows).

A change of the fused label ends the track's segment and starts a new one: an
:class:`ActivityEvent` each. A new segment's start is dated back to the centre of the earliest
window of the run of windows, just before the change, whose own label was already the new one
(when the window majority flips, the activity has changed about half a window earlier); the
previous segment ends there. A track that is lost, or silent for ``max_silence_s``, ends its
segment at its last window's newest scan; if the same id comes back within
:attr:`ActivityFusion.DOWN_LOOKBACK_S` (perception took the track up again: a person lost while
falling, found lying), its filter starts afresh with the track's ended segments, body frames and
alert state, so the alert sequence and the body check see the fall before the loss.

Alerts (e.g. a fall, then lying), at most one per occurrence: raised at the first window where
(1) the sequence is established: the fused segment's label completes ``alert_sequence`` (the
track's segment labels in order, each earlier one ending at most ``alert_within_s`` before the
last starts; other segments may come between), or it is the sequence's next-to-last label (a
fused ``fall``) and the body has been down for ``alert_down_s`` and lies along the floor (its
newest observed frame at least ``alert_min_length_m`` long horizontally: the last label, lying,
shown by the body itself before the window majority turns; the length keeps a person whose upper
body is hidden, a few low returns, from taking this early path), and (2) the body is down: the newest observed
frame of the track's windows has its centroid at least ``alert_min_drop_m`` below the highest in
the last :attr:`ActivityFusion.DOWN_LOOKBACK_S` and a height extent of at most
``alert_max_height_m`` (the window's raw sensor-frame geometry, as the head's body-motion input:
heights along the sensor's z, so a LiDAR pitched by more than about 10 degrees shows a lying body
taller). Frames without points are not observations: a person who falls out of view is judged by
the last frames that saw them. The geometric check is for falls; ``alert_min_drop_m = 0`` turns it
off (another sequence, or windows without geometry). The alert is an event flagged ``alert``: the
start event of the segment that raised it, or, when it is raised during an ongoing segment, that
segment's start announced again with ``repeat`` set (for the alerts topic, not the events one).
It stays *active* while the track's fused label stays within the sequence's labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

from despite_core.runtime.buffers import MAX_TRACKS, NS

NO_CLASS = 65535                      # class id of a text label outside the bundle's classes


@dataclass(frozen=True)
class FusionConfig:
    """``switch_rate``: prior activity changes per second (a track's filter switches more readily
    when higher); ``sharpness``: exponent on the window scores (1 = windows as independent evidence);
    ``max_silence_s``: a track with no window for longer ends its segment and restarts its filter;
    ``alert_sequence``: consecutive segment labels that raise an alert (empty = none);
    ``alert_within_s``: the sequence's earlier segments must end at most this long before its last starts;
    ``alert_min_drop_m`` / ``alert_max_height_m``: the body-down check of an alert (0 drop = no check);
    ``alert_down_s``: a body down this long during the sequence's next-to-last label establishes
    the last one (0 = only the fused label does; so does a body check that is off) when the body is also
    ``alert_min_length_m`` long horizontally. Chosen on development scenes (README, "Falls")."""

    # the alert parameters, for the places that pass them on (har_node's config, the replay, the CLI)
    ALERT_PARAMS: ClassVar[tuple[str, ...]] = ("alert_within_s", "alert_min_drop_m", "alert_max_height_m",
                                               "alert_down_s", "alert_min_length_m")

    switch_rate: float = 0.3
    sharpness: float = 0.8
    max_silence_s: float = 1.0
    alert_sequence: tuple[str, ...] = ("fall", "lying")
    alert_within_s: float = 3.0
    alert_min_drop_m: float = 0.5
    alert_max_height_m: float = 0.8
    alert_down_s: float = 1.0
    alert_min_length_m: float = 0.8

    def __post_init__(self) -> None:
        if not (self.switch_rate > 0 and math.isfinite(self.switch_rate)):
            raise ValueError(f"switch_rate must be a positive number of changes per second, got {self.switch_rate}")
        if not 0 < self.sharpness <= 4:
            raise ValueError(f"sharpness must be in (0, 4], got {self.sharpness}")
        if not self.max_silence_s > 0:
            raise ValueError(f"max_silence_s must be > 0, got {self.max_silence_s}")
        if not self.alert_within_s >= 0:
            raise ValueError(f"alert_within_s must be >= 0, got {self.alert_within_s}")
        for name in (n for n in self.ALERT_PARAMS if n != "alert_within_s"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")


@dataclass
class ActivityEvent:
    """A fused segment starting (``ongoing``) or ending. Stamps are int ns; ``stamp_ns`` is the newest
    scan of the window that produced the event (the message header: when it became known)."""

    track_id: int
    label: str
    class_id: int
    confidence: float             # start: the posterior at the change; end: its mean over the segment
    start_ns: int
    end_ns: int                   # 0 while ongoing
    ongoing: bool
    stamp_ns: int
    alert: bool = False
    repeat: bool = False          # an ongoing segment's start announced again because it raised an alert


@dataclass
class Fused:
    """A window's fused decision."""

    label: str
    class_id: int
    confidence: float


class _Frame(NamedTuple):
    """One observed frame of a track's body (raw sensor-frame geometry)."""
    stamp: int          # ns
    z: float            # centroid height along the sensor's z, m
    height: float       # vertical extent, m
    length: float       # horizontal extent, m


@dataclass
class _Track:
    posterior: np.ndarray                 # (L,)
    last_ns: int                          # newest scan of the last window
    label: int = -1                       # current segment's label index
    start_ns: int = 0
    conf_sum: float = 0.0
    windows: int = 0
    alert: bool = False                   # an alert of this track is active
    established: bool = False             # the current segment completes the alert sequence
    penultimate: bool = False             # ... or is its next-to-last label, in sequence
    down_since: int | None = None         # newest scan since which the body has been down
    # recent windows: (centre ns, raw label index), newest last, for dating a change back
    recent: list[tuple[int, int]] = field(default_factory=list)
    history: list[tuple[int, int, int]] = field(default_factory=list)   # ended segments: label, start, end
    body: list[_Frame] = field(default_factory=list)   # observed frames in the body-down lookback, oldest first


class ActivityFusion:
    """Per-track forward filter over ``labels`` and the segment events it produces.

    ``class_ids[k]`` is the message class id of label ``k`` (the bundle's class index, or
    :data:`NO_CLASS`). At most ``max_tracks`` filters (buffers.MAX_TRACKS): a new track when full
    ends the segment of the track silent longest (:attr:`evicted`)."""

    RECENT = 12                                     # windows kept to date a change back (3.6 s at stride 3)
    DOWN_LOOKBACK_S = 6.0                           # s of observed frames the body-down check looks back

    def __init__(self, labels: list[str], class_ids: list[int] | None = None, config: FusionConfig | None = None,
                 max_tracks: int = MAX_TRACKS) -> None:
        if len(labels) < 2:
            raise ValueError(f"fusion needs at least two labels, got {labels}")
        self.labels = list(labels)
        self.class_ids = list(range(len(labels))) if class_ids is None else list(class_ids)
        self.cfg = config or FusionConfig()
        self.tracks: dict[int, _Track] = {}
        seq = self.cfg.alert_sequence
        self.alert_ids = [self.labels.index(s) for s in seq] if seq and all(s in self.labels for s in seq) else []
        self.alerts = 0                                 # alerts raised so far
        # tracks that ended recently (their segment history, body frames and alert state), for the same
        # id when perception takes the track up again (a person lost while falling, found again lying)
        self._gone: dict[int, _Track] = {}
        self.max_tracks = max_tracks
        self.evicted = 0                                # filters ended early to stay within max_tracks

    @property
    def alerts_enabled(self) -> bool:
        return bool(self.alert_ids)

    def active_alerts(self) -> list[int]:
        """Tracks whose alerting segment is ongoing."""
        return sorted(t for t, s in self.tracks.items() if s.alert)

    @property
    def checks_body(self) -> bool:
        """Alerts need the windows' geometry (the body-down check is on)."""
        return self.alerts_enabled and self.cfg.alert_min_drop_m > 0

    def update(self, stamp_ns: int, windows: list[tuple]) -> tuple[list[Fused], list[ActivityEvent]]:
        """One inference batch at ``stamp_ns`` (newest scan): ``windows`` = [(track id, window scan
        stamps (T,) int ns, scores (L,)[, raw centroids (T, 3), raw extents (T, 2)])]; the geometry
        (NaN extents: a frame without points) is needed while the body-down check is on. Returns
        each window's fused decision (same order) and the events: segments that ended or started,
        alerts, and the segments of tracks silent for too long."""
        events: list[ActivityEvent] = []
        silence = int(self.cfg.max_silence_s * NS)
        present = {w[0] for w in windows}
        for tid in [t for t, s in self.tracks.items() if t not in present and stamp_ns - s.last_ns > silence]:
            events += self.end(tid)
        fused = []
        for tid, stamps, scores, *geometry in windows:
            f, ev = self._step(tid, np.asarray(stamps, np.int64), np.asarray(scores, np.float64), geometry)
            fused.append(f)
            events += ev
        return fused, events

    def _step(self, tid: int, stamps: np.ndarray, scores: np.ndarray, geometry) -> tuple[Fused, list[ActivityEvent]]:
        n = len(self.labels)
        if scores.shape != (n,):
            raise ValueError(f"track {tid}: scores of shape {scores.shape}, expected ({n},) for {n} labels")
        if self.checks_body and (len(geometry) != 2 or any(g is None for g in geometry)):
            raise ValueError(f"track {tid}: the alert's body-down check (alert_min_drop_m > 0) needs each window's "
                             "raw centroids and extents; pass them, or set alert_min_drop_m = 0")
        newest, centre = int(stamps[-1]), int((int(stamps[0]) + int(stamps[-1])) // 2)
        evidence = np.clip(scores, 1e-6, None) ** self.cfg.sharpness
        events: list[ActivityEvent] = []
        tr = self.tracks.get(tid)
        if tr is not None and newest - tr.last_ns > int(self.cfg.max_silence_s * NS):
            events += self.end(tid)
            tr = None
        if tr is None:
            while len(self.tracks) >= self.max_tracks:    # full: the track silent longest ends its segment
                events += self.end(min(self.tracks, key=lambda t: (self.tracks[t].last_ns, t)))
                self.evicted += 1
            post = evidence / evidence.sum()
            tr = self.tracks[tid] = _Track(post, newest)
            back = self._gone.pop(tid, None)
            if back is not None and newest - back.last_ns <= int(self.DOWN_LOOKBACK_S * NS):
                tr.history, tr.body, tr.alert = back.history, back.body, back.alert   # one alert per fall still
        else:
            dt = max(newest - tr.last_ns, 0) / NS
            eps = -math.expm1(-self.cfg.switch_rate * dt)            # P(switch) over dt
            prior = (1 - eps) * tr.posterior + eps * (1 - tr.posterior) / (n - 1)
            post = prior * evidence
            post /= post.sum()
            tr.posterior, tr.last_ns = post, newest
        raw = int(np.argmax(scores))
        tr.recent = (tr.recent + [(centre, raw)])[-self.RECENT:]
        k = int(np.argmax(post))
        conf = float(post[k])
        if k != tr.label:
            if tr.label < 0:
                start = int(stamps[0])                                # the first window: since its first scan
            else:
                start = centre
                for c, r in reversed(tr.recent):
                    if r != k:
                        break
                    start = c
                start = max(start, tr.start_ns + 1)
                events.append(self._ended(tid, tr, start))
            tr.label, tr.start_ns, tr.conf_sum, tr.windows = k, start, 0.0, 0
            if tr.alert and k not in self.alert_ids:            # the track left the sequence: the alert ends
                tr.alert = False
            tr.established = self._in_sequence(tr, len(self.alert_ids))
            tr.penultimate = len(self.alert_ids) >= 2 and self._in_sequence(tr, len(self.alert_ids) - 1)
            events.append(ActivityEvent(tid, self.labels[k], self.class_ids[k], conf, start, 0, True, newest))
        tr.conf_sum += conf
        tr.windows += 1
        if self.alert_ids:
            events += self._alert(tid, tr, stamps, geometry, conf, events)
        return Fused(self.labels[k], self.class_ids[k], conf), events

    def _alert(self, tid: int, tr: _Track, stamps: np.ndarray, geometry, conf: float,
               events: list[ActivityEvent]) -> list[ActivityEvent]:
        """Raise the track's alert when its sequence is established and the body is down (module doc)."""
        newest = int(stamps[-1])
        down = self._body_down(tr, stamps, geometry) if self.checks_body else True
        tr.down_since = (newest if tr.down_since is None else tr.down_since) if down else None
        held = (self.checks_body and self.cfg.alert_down_s > 0 and tr.down_since is not None
                and newest - tr.down_since >= int(self.cfg.alert_down_s * NS)
                and tr.body[-1].length >= self.cfg.alert_min_length_m)
        if tr.alert or not down or not (tr.established or (tr.penultimate and held)):
            return []
        tr.alert = True
        self.alerts += 1
        if events and events[-1].ongoing and events[-1].track_id == tid and events[-1].stamp_ns == newest:
            events[-1].alert = True                             # the segment that started now raised it
            return []
        return [ActivityEvent(tid, self.labels[tr.label], self.class_ids[tr.label], conf, tr.start_ns, 0, True,
                              newest, True, repeat=True)]

    def _body_down(self, tr: _Track, stamps: np.ndarray, geometry) -> bool:
        """Keep the window's observed frames (finite extent) in the track's lookback; the body is
        down when the newest observed frame's centroid is ``alert_min_drop_m`` below the highest
        and its height extent at most ``alert_max_height_m``."""
        centroids, extents = (np.asarray(g, np.float64) for g in geometry)
        last = tr.body[-1].stamp if tr.body else None
        for s, c, e in zip(stamps.tolist(), centroids, extents):
            if (last is None or s > last) and np.isfinite(e[0]) and np.isfinite(c[2]):
                tr.body.append(_Frame(int(s), float(c[2]), float(e[0]), float(e[1])))
                last = s
        horizon = int(stamps[-1]) - int(self.DOWN_LOOKBACK_S * NS)
        while tr.body and tr.body[0].stamp < horizon:
            tr.body.pop(0)
        if len(tr.body) < 2:
            return False
        top = max(b.z for b in tr.body)
        newest = tr.body[-1]
        return top - newest.z >= self.cfg.alert_min_drop_m and newest.height <= self.cfg.alert_max_height_m

    def _in_sequence(self, tr: _Track, upto: int) -> bool:
        """The current segment's label is the alert sequence's ``upto``-th and the labels before it
        occur, in order, among the track's segments ending at most ``alert_within_s`` before it
        started (other segments may come between: a fall misread as a squat for one window still
        alerts)."""
        seq = self.alert_ids
        if not seq or upto < 1 or tr.label != seq[upto - 1]:
            return False
        want = list(seq[:upto - 1])
        horizon = tr.start_ns - int(self.cfg.alert_within_s * NS)
        for label, _, end in reversed(tr.history):
            if not want or end < horizon:
                break
            if label == want[-1]:
                want.pop()
        return not want

    def _ended(self, tid: int, tr: _Track, end_ns: int) -> ActivityEvent:
        conf = tr.conf_sum / tr.windows if tr.windows else 0.0
        tr.history = (tr.history + [(tr.label, tr.start_ns, end_ns)])[-8:]
        return ActivityEvent(tid, self.labels[tr.label], self.class_ids[tr.label], conf, tr.start_ns, end_ns, False,
                             tr.last_ns, tr.alert)

    def end(self, tid: int) -> list[ActivityEvent]:
        """The track is gone (lost by perception, or silent): its segment ends at its last window."""
        tr = self.tracks.pop(tid, None)
        if tr is None or tr.label < 0:
            return []
        ev = self._ended(tid, tr, max(tr.last_ns, tr.start_ns + 1))
        if self.alert_ids:
            horizon = tr.last_ns - int(self.DOWN_LOOKBACK_S * NS)
            self._gone = {t: g for t, g in self._gone.items() if g.last_ns >= horizon}
            self._gone[tid] = tr
            while len(self._gone) > self.max_tracks:            # bounded: the oldest ending goes
                self._gone.pop(min(self._gone, key=lambda t: self._gone[t].last_ns))
        return [ev]

    def flush(self) -> list[ActivityEvent]:
        """End every ongoing segment (the end of a recording)."""
        out = []
        for tid in sorted(self.tracks):
            out += self.end(tid)
        return out

    def reset(self) -> list[ActivityEvent]:
        """Time went backwards: segments end where they were, filters restart."""
        out = self.flush()
        self._gone.clear()
        return out
