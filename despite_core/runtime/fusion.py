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
segment at its last window's newest scan.

Alerts: a segment whose label completes ``alert_sequence`` (the track's consecutive segment
labels, e.g. ``fall`` then ``lying``, in order, each earlier one ending at most ``alert_within_s``
before the last starts; other segments may come between) is flagged ``alert`` on its start event;
it stays an *active* alert until it ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from despite_core.runtime.buffers import MAX_TRACKS, NS

NO_CLASS = 65535                      # class id of a text label outside the bundle's classes


@dataclass(frozen=True)
class FusionConfig:
    """``switch_rate``: prior activity changes per second (a track's filter switches more readily
    when higher); ``sharpness``: exponent on the window scores (1 = windows as independent evidence);
    ``max_silence_s``: a track with no window for longer ends its segment and restarts its filter;
    ``alert_sequence``: consecutive segment labels that raise an alert (empty = none);
    ``alert_within_s``: the sequence's earlier segments must end at most this long before its last starts."""

    switch_rate: float = 0.3
    sharpness: float = 0.8
    max_silence_s: float = 1.0
    alert_sequence: tuple[str, ...] = ("fall", "lying")
    alert_within_s: float = 3.0

    def __post_init__(self) -> None:
        if not (self.switch_rate > 0 and math.isfinite(self.switch_rate)):
            raise ValueError(f"switch_rate must be a positive number of changes per second, got {self.switch_rate}")
        if not 0 < self.sharpness <= 4:
            raise ValueError(f"sharpness must be in (0, 4], got {self.sharpness}")
        if not self.max_silence_s > 0:
            raise ValueError(f"max_silence_s must be > 0, got {self.max_silence_s}")
        if not self.alert_within_s >= 0:
            raise ValueError(f"alert_within_s must be >= 0, got {self.alert_within_s}")


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


@dataclass
class Fused:
    """A window's fused decision."""

    label: str
    class_id: int
    confidence: float


@dataclass
class _Track:
    posterior: np.ndarray                 # (L,)
    last_ns: int                          # newest scan of the last window
    label: int = -1                       # current segment's label index
    start_ns: int = 0
    conf_sum: float = 0.0
    windows: int = 0
    alert: bool = False
    # recent windows: (centre ns, raw label index), newest last, for dating a change back
    recent: list[tuple[int, int]] = field(default_factory=list)
    history: list[tuple[int, int, int]] = field(default_factory=list)   # ended segments: label, start, end


class ActivityFusion:
    """Per-track forward filter over ``labels`` and the segment events it produces.

    ``class_ids[k]`` is the message class id of label ``k`` (the bundle's class index, or
    :data:`NO_CLASS`). At most ``max_tracks`` filters (buffers.MAX_TRACKS): a new track when full
    ends the segment of the track silent longest (:attr:`evicted`)."""

    RECENT = 12                                     # windows kept to date a change back (3.6 s at stride 3)

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
        self.max_tracks = max_tracks
        self.evicted = 0                                # filters ended early to stay within max_tracks

    @property
    def alerts_enabled(self) -> bool:
        return bool(self.alert_ids)

    def active_alerts(self) -> list[int]:
        """Tracks whose alerting segment is ongoing."""
        return sorted(t for t, s in self.tracks.items() if s.alert)

    def update(self, stamp_ns: int, windows: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[list[Fused], list[ActivityEvent]]:
        """One inference batch at ``stamp_ns`` (newest scan): ``windows`` = [(track id, window scan
        stamps (T,) int ns, scores (L,))]. Returns each window's fused decision (same order) and the
        events: segments that ended or started, and those of tracks silent for too long."""
        events: list[ActivityEvent] = []
        silence = int(self.cfg.max_silence_s * NS)
        present = {tid for tid, _, _ in windows}
        for tid in [t for t, s in self.tracks.items() if t not in present and stamp_ns - s.last_ns > silence]:
            events += self.end(tid)
        fused = []
        for tid, stamps, scores in windows:
            f, ev = self._step(tid, np.asarray(stamps, np.int64), np.asarray(scores, np.float64))
            fused.append(f)
            events += ev
        return fused, events

    def _step(self, tid: int, stamps: np.ndarray, scores: np.ndarray) -> tuple[Fused, list[ActivityEvent]]:
        n = len(self.labels)
        if scores.shape != (n,):
            raise ValueError(f"track {tid}: scores of shape {scores.shape}, expected ({n},) for {n} labels")
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
            tr.alert = self._completes_alert(tr)
            self.alerts += tr.alert
            events.append(ActivityEvent(tid, self.labels[k], self.class_ids[k], conf, start, 0, True, newest, tr.alert))
        tr.conf_sum += conf
        tr.windows += 1
        return Fused(self.labels[k], self.class_ids[k], conf), events

    def _completes_alert(self, tr: _Track) -> bool:
        """The new segment's label ends the alert sequence and the labels before it occur, in order,
        among the track's segments that ended at most ``alert_within_s`` before it started (other
        segments may come between: a fall misread as a squat for one window still alerts)."""
        seq = self.alert_ids
        if not seq or tr.label != seq[-1]:
            return False
        want = list(seq[:-1])
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
        ev = ActivityEvent(tid, self.labels[tr.label], self.class_ids[tr.label], conf, tr.start_ns, end_ns, False,
                           tr.last_ns, tr.alert)
        tr.alert = False
        return ev

    def end(self, tid: int) -> list[ActivityEvent]:
        """The track is gone (lost by perception, or silent): its segment ends at its last window."""
        tr = self.tracks.pop(tid, None)
        if tr is None or tr.label < 0:
            return []
        return [self._ended(tid, tr, max(tr.last_ns, tr.start_ns + 1))]

    def flush(self) -> list[ActivityEvent]:
        """End every ongoing segment (the end of a recording)."""
        out = []
        for tid in sorted(self.tracks):
            out += self.end(tid)
        return out

    def reset(self) -> list[ActivityEvent]:
        """Time went backwards: segments end where they were, filters restart."""
        return self.flush()
