"""Scoring the running nodes from their published outputs (the demo and bag-eval's replay mode):
collects ActivityArray, the evaluation-only truth association, Embedding (the windows' scan
stamps), MatchArray and ActivityEvent, and scores each window once its parts have arrived, with
the fixed rules of despite_core.runtime.scoring (a window's reported label is the fused one; its
own is the argmax of its scores)."""
from __future__ import annotations

import time

from despite_core.runtime.buffers import stamp_ns as _ns
from despite_core.runtime.fusion import ActivityEvent
from despite_core.runtime.scoring import GroundTruth, Scoreboard, person_of


class LiveScorer:
    def __init__(self, node, gt: GroundTruth, subscribe_gt: bool = True, keep_messages: bool = False) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from despite_ros.msg import ActivityArray, ActivityEvent as EventMsg, Embedding, MatchArray

        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.gt = gt
        self.names = gt.class_names
        self.board = Scoreboard(list(self.names))
        self.truth: dict[tuple[int, int], int] = {}          # (stamp, track) -> true person (0 = none)
        self.frames: dict[tuple[int, int], list[int]] = {}    # (stamp, track) -> window scan stamps
        self.pending: list[tuple[float, int, object]] = []    # (arrival, stamp, ActivityArray)
        self.matches: list[tuple[float, int, object]] = []
        self.arrivals: dict[int, float] = {}                  # stamp -> first arrival (perf_counter)
        self.rows: list[tuple] = []                           # for the live table
        self.wearer_of: dict[tuple[int, int], str] = {}
        self.keep_messages = keep_messages
        self.messages: list[tuple[str, float, object]] = []   # (topic, arrival, msg), only for --record
        self.missing_frames = 0                               # windows whose Embedding never arrived
        self.events: list[ActivityEvent] = []                 # har_node's events, as received
        self.new_events: list[ActivityEvent] = []             # not yet shown (the demo prints them)
        self.alert_keys: set[tuple[int, int]] = set()         # (track, start) of segments on /despite/alerts
        self.first_stamp: int | None = None                   # oldest window scan seen (the demo's time zero)
        if subscribe_gt:
            node.create_subscription(ActivityArray, "/ground_truth/activities", gt.add_message, qos)
        node.create_subscription(ActivityArray, "/despite/truth", self.on_truth, qos)
        node.create_subscription(Embedding, "/despite/embeddings", self.on_embedding, qos)
        node.create_subscription(ActivityArray, "/despite/activities", self.on_activities, qos)
        node.create_subscription(MatchArray, "/despite/matches", self.on_matches, qos)
        node.create_subscription(EventMsg, "/despite/events", self.on_event, qos)
        node.create_subscription(EventMsg, "/despite/alerts", self.on_alert, qos)
        node.create_subscription(ActivityArray, "/despite/imu_activities",
                                 lambda m: self._keep("/despite/imu_activities", m), qos)

    def _keep(self, topic: str, msg) -> None:
        if self.keep_messages:
            self.messages.append((topic, time.perf_counter(), msg))

    def on_activities(self, msg) -> None:
        now = time.perf_counter()
        s = _ns(msg.header.stamp)
        self.arrivals.setdefault(s, now)
        self.pending.append((time.monotonic(), s, msg))
        for p in msg.people:
            w = _ns(p.window_start)
            self.first_stamp = w if self.first_stamp is None else min(self.first_stamp, w)
        self._keep("/despite/activities", msg)

    def on_matches(self, msg) -> None:
        self.matches.append((time.monotonic(), _ns(msg.header.stamp), msg))
        self._keep("/despite/matches", msg)

    @staticmethod
    def _event(msg) -> ActivityEvent:
        return ActivityEvent(int(msg.track_id), msg.label, int(msg.class_id), float(msg.confidence), _ns(msg.start),
                             _ns(msg.end), bool(msg.ongoing), _ns(msg.header.stamp))

    def on_event(self, msg) -> None:
        e = self._event(msg)
        self.events.append(e)
        self.new_events.append(e)
        self._keep("/despite/events", msg)

    def on_alert(self, msg) -> None:
        """An alert: the first ongoing message of each alerting segment, kept with its own stamp (when
        the alert was raised) as an alert event; it repeats a segment start of /despite/events, so
        segment scoring does not count it again (``repeat``). The segment ends of an active alert
        come here too (not alerts themselves)."""
        e = self._event(msg)
        if e.ongoing and (e.track_id, e.start_ns) not in self.alert_keys:
            self.alert_keys.add((e.track_id, e.start_ns))
            e.alert, e.repeat = True, True
            self.events.append(e)
            self.new_events.append(e)
        self._keep("/despite/alerts", msg)

    def closed_events(self) -> list[ActivityEvent]:
        """The events so far, with every segment still ongoing ended at its track's newest scored window
        (the nodes stop before they could end them)."""
        ended = {(e.track_id, e.start_ns) for e in self.events if not e.ongoing}
        last: dict[int, int] = {}
        for r in self.board.records:
            last[r["track"]] = max(last.get(r["track"], 0), r["stamp"])
        out = list(self.events)
        for e in self.events:
            if e.ongoing and not e.repeat and (e.track_id, e.start_ns) not in ended:
                end = max(last.get(e.track_id, e.stamp_ns), e.start_ns + 1)
                out.append(ActivityEvent(e.track_id, e.label, e.class_id, e.confidence, e.start_ns, end, False, end))
        return out

    def on_truth(self, msg) -> None:
        s = _ns(msg.header.stamp)
        for p in msg.people:
            self.truth[(s, p.track_id)] = person_of(p.wearer_id)

    def on_embedding(self, msg) -> None:
        self.frames[(_ns(msg.header.stamp), msg.track_id)] = [_ns(t) for t in msg.frame_stamps]

    def score_ready(self, settle: float = 0.5) -> None:
        """Score what arrived at least ``settle`` s ago (its truth and embeddings have arrived too)."""
        now = time.monotonic()
        keep = []
        for arrived, stamp, msg in self.matches:
            if now - arrived < settle:
                keep.append((arrived, stamp, msg))
                continue
            for a in msg.assignments:
                if a.assigned:
                    self.wearer_of[(stamp, a.track_id)] = a.wearer_id
                    self.board.add_match(a.wearer_id, person_of(a.wearer_id), self.truth.get((stamp, a.track_id), 0))
        self.matches = keep
        keep = []
        for arrived, stamp, msg in self.pending:
            if now - arrived < settle:
                keep.append((arrived, stamp, msg))
                continue
            for p in msg.people:
                key = (stamp, p.track_id)
                if key not in self.frames:                    # its Embedding was lost: not scorable
                    self.missing_frames += 1
                    continue
                person = self.truth.get(key, 0)
                labels = self.gt.labels(person, self.frames.get(key, [])) if person else []
                scores = list(p.scores)
                raw = int(max(range(len(scores)), key=scores.__getitem__)) if len(scores) == len(self.names) else -1
                rec = self.board.score_window(stamp, p.track_id, person, labels, int(p.class_id), p.confidence, raw=raw)
                true = rec["true"]
                shown = "(no person)" if rec["outcome"] == "unassociated" else (self.names[true] if true >= 0 else "-")
                self.rows.append((p.track_id, shown, p.label, p.confidence, self.wearer_of.get(key, "")))
        self.pending = keep
