"""matching_node: which IMU wearer is which person in the LiDAR scene.

Subscribes ``~/input/embeddings`` (har_node's point-cloud track embeddings) and each declared
wearer's Imu topics (``imu_topic`` with {wearer} and {site}; sites from the bundle's IMU layout,
LIPD's four). For each batch of track embeddings (same header stamp), cuts every wearer's IMU
window at the tracks' scan stamps, embeds it, and publishes ``~/output/matches`` (MatchArray:
cosine similarity wearer x track, softmax probabilities over tracks at the bundle's temperature,
Hungarian assignment gated by ``min_similarity``) and, when the bundle has an IMU head,
``~/output/imu_activities`` (ActivityArray, source ``imu``, one entry per wearer). ``/diagnostics``.

Thin glue over despite_core.runtime.pipeline.WearerMatcher and despite_core.runtime.buffers.WearerImu.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu
from std_msgs.msg import Header

from despite_core.runtime.buffers import MAX_TRACKS, imu_values_of, stamp_ns
from despite_core.runtime.inference import PROVIDERS, Runtime, default_bundle_path
from despite_ros.msg import ActivityArray, Embedding, MatchArray, MatchScore, PersonActivity
from despite_ros.nodes.har_node import to_time
from despite_ros.nodes import common
from despite_ros.nodes.common import SinceLast, declare
from despite_core.runtime.pipeline import WearerMatcher


@dataclass(frozen=True)
class MatchingParams:
    model: str = ""
    providers: str = "auto"
    threads: int = 1
    wearers: tuple[str, ...] = ("person_1", "person_2")
    imu_topic: str = "/{wearer}/imu/{site}"
    min_similarity: float = 0.1
    max_stale: float = 0.15
    flush_delay: float = 0.05
    diagnostics_period: float = 1.0

    def __post_init__(self) -> None:
        if self.providers not in PROVIDERS:
            raise ValueError(f"providers must be one of {sorted(PROVIDERS)}, got {self.providers!r}")
        if "{wearer}" not in self.imu_topic or "{site}" not in self.imu_topic:
            raise ValueError(f"imu_topic must contain {{wearer}} and {{site}}, got {self.imu_topic!r}")


DOCS = {
    "model": ("model bundle directory; empty = the installed default",),
    "providers": ("ONNX Runtime providers: auto, cpu, cuda, tensorrt",),
    "threads": ("ONNX Runtime intra-op threads", 1, 64),
    "wearers": ("wearer ids; each has one Imu topic per site of the bundle's layout",),
    "imu_topic": ("Imu topic pattern with {wearer} and {site}",),
    "min_similarity": ("cosine similarity below which a wearer stays unassigned", -1.0, 1.0),
    "max_stale": ("seconds the newest IMU sample may lag the newest scan of a window", 0.0, 5.0),
    "flush_delay": ("seconds after the last embedding of a batch before matching it", 0.0, 1.0),
    "diagnostics_period": ("seconds between /diagnostics messages", 0.1, 60.0),
}


class MatchingNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("matching_node", **kwargs)
        self.params: MatchingParams = declare(self, MatchingParams, DOCS)
        p = self.params
        bundle = p.model or str(default_bundle_path())
        self.runtime = Runtime(bundle, providers=p.providers, threads=p.threads)
        self.matcher = WearerMatcher(self.runtime, list(p.wearers), p.min_similarity, p.max_stale)
        self.model_id = str(self.runtime.bundle.meta["model_id"])
        self.embedding_dim = int(self.runtime.bundle.meta["embedding_dim"])
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        # best effort like any sensor, but half a second of samples at 100 Hz queued per site (the
        # sensor-data profile keeps 5: 50 ms, less than one match or a busy moment of this process)
        imu_qos = QoSProfile(depth=self.IMU_QUEUE, reliability=qos_profile_sensor_data.reliability,
                             durability=qos_profile_sensor_data.durability)
        self.create_subscription(Embedding, "~/input/embeddings", self.on_embedding, reliable)
        for wearer in p.wearers:
            for site in self.matcher.layout.sites:
                topic = p.imu_topic.format(wearer=wearer, site=site)
                self.create_subscription(Imu, topic, lambda m, w=wearer, s=site: self.on_imu(w, s, m), imu_qos)
        self.match_pub = self.create_publisher(MatchArray, "~/output/matches", reliable)
        self.imu_act_pub = self.create_publisher(ActivityArray, "~/output/imu_activities", reliable)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self.pending: dict[int, dict] = {}
        self.counts = {"imu": 0, "late": 0, "invalid": 0, "duplicate": 0, "backwards": 0, "batches": 0,
                       "embeddings": 0, "bad_embeddings": 0, "stale_batches": 0, "errors": 0}
        self.since = SinceLast()
        self.missing: dict[str, str] = {}
        self.times: list[float] = []
        self.create_timer(0.02, self.flush)
        self.create_timer(p.diagnostics_period, self.publish_diagnostics)
        self.get_logger().info(f"matching wearers {list(p.wearers)} with model {self.model_id}, "
                               f"provider {self.runtime.provider}")

    def on_imu(self, wearer: str, site: str, msg: Imu) -> None:
        status = self.matcher.wearers[wearer].push(site, stamp_ns(msg.header.stamp), imu_values_of(msg))
        if status in ("ok", "late"):
            self.counts["imu"] += 1                  # accepted (a late sample is put in order)
        if status != "ok":
            self.counts[status] += 1

    IMU_QUEUE = 50             # samples queued per IMU topic before the oldest are dropped
    MAX_PENDING = 32           # batches waiting for flush_delay; older ones are dropped (counted)
    MAX_TRACKS = MAX_TRACKS    # tracks in one batch (buffers.MAX_TRACKS, as many as har_node holds)

    def on_embedding(self, msg: Embedding) -> None:
        data = np.asarray(msg.data, np.float32)
        stamps = np.array([stamp_ns(s) for s in msg.frame_stamps], np.int64)
        # one check of everything a batch relies on: a window of the bundle's length with increasing
        # stamps ending at the header's, and a finite unit vector of the bundle's width
        if (msg.modality != "pointcloud" or len(stamps) != self.matcher.cfg.window or len(data) != self.embedding_dim
                or not np.all(np.diff(stamps) > 0) or stamps[-1] != stamp_ns(msg.header.stamp)
                or not np.all(np.isfinite(data)) or abs(float(np.linalg.norm(data)) - 1.0) > 0.01):
            self.counts["bad_embeddings"] += 1
            return
        key = stamp_ns(msg.header.stamp)
        batch = self.pending.setdefault(key, {"tracks": {}, "frame": msg.header.frame_id})
        if len(batch["tracks"]) >= self.MAX_TRACKS and msg.track_id not in batch["tracks"]:
            self.counts["bad_embeddings"] += 1
            return
        self.counts["embeddings"] += 1
        batch["tracks"][msg.track_id] = (stamps, data)
        batch["arrived"] = time.monotonic()
        while len(self.pending) > self.MAX_PENDING:
            del self.pending[min(self.pending)]
            self.counts["stale_batches"] += 1

    def flush(self) -> None:
        now = time.monotonic()
        for stamp in sorted(self.pending):
            batch = self.pending[stamp]
            if now - batch["arrived"] < self.params.flush_delay:
                continue
            del self.pending[stamp]
            t0 = time.perf_counter()
            try:
                self.match(stamp, batch)
            except Exception as e:  # noqa: BLE001 - a bad batch must not stop the node; logged and counted
                self.counts["errors"] = self.counts.get("errors", 0) + 1
                self.get_logger().error(f"matching the batch at {stamp} ns failed: {type(e).__name__}: {e}",
                                        throttle_duration_sec=5.0)
                continue
            self.times.append(time.perf_counter() - t0)

    def match(self, stamp: int, batch: dict) -> None:
        tracks = sorted(batch["tracks"])
        stamps = batch["tracks"][tracks[0]][0]
        emb = np.stack([batch["tracks"][t][1] for t in tracks])
        res = self.matcher.match(stamps, tracks, emb)
        self.missing = res.missing
        self.counts["batches"] += 1
        header = Header(stamp=to_time(stamp), frame_id=batch["frame"])
        out = MatchArray(header=header, wearer_ids=res.wearer_ids, track_ids=tracks,
                         similarity=[float(x) for x in res.similarity.ravel()])
        for w, wid in enumerate(res.wearer_ids):
            tid = res.assigned.get(wid)
            k = tracks.index(tid) if tid is not None else int(np.argmax(res.similarity[w]))
            out.assignments.append(MatchScore(wearer_id=wid, track_id=tracks[k], similarity=float(res.similarity[w, k]),
                                              probability=float(res.probability[w, k]), assigned=tid is not None))
        self.match_pub.publish(out)
        if res.imu_labels:
            acts = ActivityArray(header=header, model_id=self.model_id, source="imu")
            for wid, (label, cid, conf, scores) in res.imu_labels.items():
                acts.people.append(PersonActivity(track_id=res.assigned.get(wid, 0), wearer_id=wid, label=label,
                                                  class_id=cid, confidence=conf, scores=[float(x) for x in scores],
                                                  window_start=to_time(int(stamps[0])),
                                                  window_duration=float(len(stamps) / self.matcher.cfg.fps)))
            self.imu_act_pub.publish(acts)

    def publish_diagnostics(self) -> None:
        t = np.array(self.times) * 1e3 if self.times else np.zeros(1)
        values = {**self.counts, "processing_ms_p50": f"{np.median(t):.2f}", "processing_ms_max": f"{t.max():.2f}",
                  "provider": self.runtime.provider, "model_id": self.model_id,
                  **{f"waiting_{w}": why for w, why in self.missing.items()}}
        level, message = DiagnosticStatus.OK, "ok"
        recent = self.since(self.counts)              # the level follows the last period; values are totals
        if recent["errors"]:
            level, message = DiagnosticStatus.ERROR, f"{recent['errors']} batches failed (see the log)"
        elif recent["imu"] == 0:
            level, message = DiagnosticStatus.WARN, "no IMU data in the last period"
        elif recent["invalid"] or recent["bad_embeddings"] or recent["backwards"]:
            level, message = DiagnosticStatus.WARN, "invalid or out-of-order inputs dropped in the last period"
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: matching", message=message, hardware_id="despite",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))
        self.times = []


def main(args: list[str] | None = None) -> int:
    return common.main("matching_node", MatchingNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
