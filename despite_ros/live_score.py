"""Scoring the running nodes from their published outputs (the demo and bag-eval's replay mode):
collects ActivityArray, the evaluation-only truth association, Embedding (the windows' scan
stamps) and MatchArray, and scores each window once its parts have arrived, with the fixed
rules of despite_core.runtime.scoring."""
from __future__ import annotations

import time

from despite_core.runtime.buffers import stamp_ns as _ns
from despite_core.runtime.scoring import GroundTruth, Scoreboard, person_of


class LiveScorer:
    def __init__(self, node, gt: GroundTruth, subscribe_gt: bool = True, keep_messages: bool = False) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from despite_ros.msg import ActivityArray, Embedding, MatchArray

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
        if subscribe_gt:
            node.create_subscription(ActivityArray, "/ground_truth/activities", gt.add_message, qos)
        node.create_subscription(ActivityArray, "/despite/truth", self.on_truth, qos)
        node.create_subscription(Embedding, "/despite/embeddings", self.on_embedding, qos)
        node.create_subscription(ActivityArray, "/despite/activities", self.on_activities, qos)
        node.create_subscription(MatchArray, "/despite/matches", self.on_matches, qos)
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
        self._keep("/despite/activities", msg)

    def on_matches(self, msg) -> None:
        self.matches.append((time.monotonic(), _ns(msg.header.stamp), msg))
        self._keep("/despite/matches", msg)

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
                rec = self.board.score_window(stamp, p.track_id, person, labels, int(p.class_id), p.confidence)
                true = rec["true"]
                shown = "(no person)" if rec["outcome"] == "unassociated" else (self.names[true] if true >= 0 else "-")
                self.rows.append((p.track_id, shown, p.label, p.confidence, self.wearer_of.get(key, "")))
        self.pending = keep
