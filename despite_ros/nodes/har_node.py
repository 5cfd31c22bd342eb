"""har_node: LiDAR scans in, per-person activity labels out.

Subscribes ``~/input/points`` (sensor_msgs/PointCloud2, sensor-data QoS). Publishes
``~/output/activities`` (ActivityArray, one entry per track with a full window; stamp = the newest
scan of the window, frame = the cloud's frame), ``~/output/embeddings`` (Embedding per track, with
the window's scan stamps), ``~/output/events`` (ActivityEvent: a track's fused segment starting or
ending), ``~/output/alerts`` (a fall alert: once per fall, when the fused labels reach ``alert_sequence``,
fall then lying, with the body down, or a fused fall with the body down for ``alert_down_s`` and
lying along the floor; the
alerting segment's start event, which when raised mid-segment goes to this topic only; then the
ends of its segments; a /diagnostics WARN names the track while it lasts; runtime.fusion), ``~/output/markers`` (MarkerArray:
the fused label over each person, coloured by class) and ``/diagnostics``. With ``fusion`` on (the
default) a PersonActivity's ``label``, ``class_id`` and ``confidence`` are the track's fused label
and its posterior, and ``scores`` stay the window's own (its own label is their argmax). With ``truth_field`` set (evaluation only) and the cloud carrying that
per-point person id, also ``~/output/truth``: ActivityArray (source ``ground_truth``) whose entries
give each inferred track's true person (``wearer_id`` = ``person_<k>``, empty when unassociated).

Thin glue over despite_core.runtime.pipeline.HarPipeline (perception, buffers, streaming inference).
"""
from __future__ import annotations

import colorsys
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from despite_core.data.pointcloud2 import PointCloud2Error, decode_points
from despite_core.runtime.buffers import MAX_TRACKS, stamp_ns
from despite_core.runtime.inference import PROVIDERS, Runtime, default_bundle_path
from despite_ros.msg import ActivityArray, ActivityEvent, Embedding, PersonActivity
from despite_ros.nodes import common
from despite_ros.nodes.common import SinceLast, declare
from despite_core.runtime.fusion import FusionConfig
from despite_core.runtime.perception import PerceptionConfig
from despite_core.runtime.pipeline import LABEL_SOURCES, HarPipeline
from despite_core.runtime.scoring import track_person


@dataclass(frozen=True)
class HarParams:
    model: str = ""
    providers: str = "auto"
    threads: int = 2
    stride: int = 3
    label_source: str = "head"
    truth_field: str = ""
    # temporal fusion: the library's defaults (FusionConfig)
    fusion: bool = True
    fusion_switch_rate: float = FusionConfig.switch_rate
    fusion_sharpness: float = FusionConfig.sharpness
    alert_sequence: tuple[str, ...] = FusionConfig.alert_sequence
    alert_within_s: float = FusionConfig.alert_within_s
    alert_min_drop_m: float = FusionConfig.alert_min_drop_m
    alert_max_height_m: float = FusionConfig.alert_max_height_m
    alert_down_s: float = FusionConfig.alert_down_s
    alert_min_length_m: float = FusionConfig.alert_min_length_m
    # perception: the library's defaults (PerceptionConfig), one place
    max_range: float = PerceptionConfig.max_range
    background: bool = PerceptionConfig.background
    background_learn_s: float = PerceptionConfig.background_learn_s
    background_absorb_s: float = PerceptionConfig.background_absorb_s
    ground_z: float = math.nan
    cell: float = PerceptionConfig.cell
    min_points: int = PerceptionConfig.min_points
    track_gate: float = PerceptionConfig.track_gate
    max_missed: int = PerceptionConfig.max_missed
    person_classifier: str = PerceptionConfig.classifier
    marker_lifetime: float = 0.5
    diagnostics_period: float = 1.0

    def __post_init__(self) -> None:
        if self.providers not in PROVIDERS:
            raise ValueError(f"providers must be one of {sorted(PROVIDERS)}, got {self.providers!r}")
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {self.label_source!r}")

    def fusion_config(self) -> FusionConfig | None:
        if not self.fusion:
            return None
        return FusionConfig(switch_rate=self.fusion_switch_rate, sharpness=self.fusion_sharpness,
                            alert_sequence=tuple(x for x in self.alert_sequence if x),
                            **{k: getattr(self, k) for k in FusionConfig.ALERT_PARAMS})

    def perception(self, points_per_frame: int) -> PerceptionConfig:
        return PerceptionConfig(max_range=self.max_range, background=self.background,
                                background_learn_s=self.background_learn_s, background_absorb_s=self.background_absorb_s,
                                ground_z=None if math.isnan(self.ground_z) else self.ground_z, cell=self.cell,
                                min_points=self.min_points, track_gate=self.track_gate, max_missed=self.max_missed,
                                classifier=self.person_classifier, points_per_frame=points_per_frame)


DOCS = {
    "model": ("model bundle directory; empty = the installed default (share/despite_ros/models/default)",),
    "providers": ("ONNX Runtime providers: auto (TensorRT, CUDA, then CPU), cpu, cuda, tensorrt",),
    "threads": ("ONNX Runtime intra-op threads", 1, 64),
    "stride": ("infer every N selected scans (all ready tracks in one batch)", 1, 24),
    "label_source": ("head (the bundle's trained classifier) or text (nearest text query, open vocabulary)",),
    "fusion": ("fuse each track's successive windows (a forward filter): stable labels and ~/output/events; "
               "false = every window's own label, no events",),
    "fusion_switch_rate": ("fusion: prior activity changes per second (higher follows changes sooner, flickers more)",
                           0.01, 10.0),
    "fusion_sharpness": ("fusion: exponent on the window scores (1 = overlapping windows as independent evidence)",
                         0.05, 4.0),
    "alert_sequence": ("fused segment labels that, in order, raise an alert on ~/output/alerts and a /diagnostics "
                       "WARN (default: fall, lying; off when the bundle lacks one of them)",),
    "alert_within_s": ("the alert sequence's earlier segments end at most this long before its last starts, s", 0.0, 60.0),
    "alert_min_drop_m": ("an alert needs the body down: its newest observed centroid this far below its highest in "
                         "the last 6 s, m (0 = no body check: for a sequence that is not a fall)", 0.0, 3.0),
    "alert_max_height_m": ("an alert needs the body down: its newest observed height extent at most this, m",
                           0.0, 3.0),
    "alert_down_s": ("a body down this long during a fused fall (the sequence's next-to-last label) raises the "
                     "alert before the fused label turns to lying, s (0 = wait for the fused label)", 0.0, 10.0),
    "alert_min_length_m": ("... when the body also lies along the floor: its newest observed horizontal extent at "
                           "least this, m (keeps a person with a hidden upper body off that early path)", 0.0, 3.0),
    "truth_field": ("evaluation only: per-point person-id field (gt_person) to publish ~/output/truth; empty = off",),
    "max_range": ("horizontal range of interest, m", 1.0, 200.0),
    "background": ("learn a static background (fixed sensor) that removes walls and furniture; false on a moving "
                   "robot (people are found by shape either way)",),
    "background_learn_s": ("seconds of scans that learn the background before detection starts", 0.1, 60.0),
    "background_absorb_s": ("seconds a static object outside tracks takes to join the background", 1.0, 3600.0),
    "ground_z": ("level floor at this height in the sensor frame, m; NaN = fit the floor plane (any tilt) every second",),
    "cell": ("clustering grid cell, m", 0.03, 1.0),
    "min_points": ("fewest points of a person candidate", 1, 100000),
    "track_gate": ("largest distance between a track's prediction and its detection, m", 0.1, 10.0),
    "max_missed": ("scans a track survives without a detection", 0, 100),
    "person_classifier": ("person / not-person cluster classifier (npz from `despite train person`); empty = the "
                          "installed default (share/despite_ros/models/perception/person_classifier.npz)",),
    "marker_lifetime": ("RViz marker lifetime, s", 0.05, 10.0),
    "diagnostics_period": ("seconds between /diagnostics messages", 0.1, 60.0),
}


def to_time(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def class_colour(class_id: int, n: int) -> ColorRGBA:
    r, g, b = colorsys.hsv_to_rgb((class_id % max(n, 1)) / max(n, 1), 0.8, 1.0)
    return ColorRGBA(r=r, g=g, b=b, a=1.0)


class HarNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("har_node", **kwargs)
        self.params: HarParams = declare(self, HarParams, DOCS)
        p = self.params
        bundle = p.model or str(default_bundle_path())
        self.runtime = Runtime(bundle, providers=p.providers, threads=p.threads)
        meta = self.runtime.bundle.meta
        self.pipeline = HarPipeline(self.runtime, p.perception(int(meta["points_per_frame"])), stride=p.stride,
                                    label_source=p.label_source, fusion=p.fusion_config())
        self.model_id = str(meta["model_id"])
        self.window_s = int(meta["window"]) / float(meta["fps"])
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(PointCloud2, "~/input/points", self.on_points, qos_profile_sensor_data)
        self.act_pub = self.create_publisher(ActivityArray, "~/output/activities", reliable)
        self.emb_pub = self.create_publisher(Embedding, "~/output/embeddings", reliable)
        self.event_pub = self.create_publisher(ActivityEvent, "~/output/events", reliable)
        self.alert_pub = self.create_publisher(ActivityEvent, "~/output/alerts", reliable)
        self.events = 0
        self.marker_pub = self.create_publisher(MarkerArray, "~/output/markers", reliable)
        self.truth_pub = self.create_publisher(ActivityArray, "~/output/truth", reliable) if p.truth_field else None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self.invalid = 0
        self.errors = 0
        self.decode_errors = 0
        self.since = SinceLast()
        self.received = 0
        self.times: list[float] = []
        self.window_start = time.monotonic()
        self.create_timer(p.diagnostics_period, self.publish_diagnostics)
        self.get_logger().info(f"model {self.model_id} ({bundle}), provider {self.runtime.provider}, "
                               f"labels from the {p.label_source}, inference every {p.stride} frames, "
                               f"fusion {'on' if p.fusion else 'off'}")
        fusion = self.pipeline.fusion
        if fusion is not None and p.alert_sequence and not fusion.alerts_enabled:
            self.get_logger().info(f"alerts off: the labels lack one of alert_sequence {list(p.alert_sequence)}")

    def on_points(self, msg: PointCloud2) -> None:
        t0 = time.perf_counter()
        self.received += 1
        try:
            truth_on = bool(self.params.truth_field) and self.params.truth_field in [str(f.name) for f in msg.fields]
            xyz, cols = decode_points(msg, [self.params.truth_field] if truth_on else [])
            truth = cols[self.params.truth_field] if truth_on else None
        except PointCloud2Error as e:
            self.invalid += 1
            self.get_logger().warn(f"invalid PointCloud2 dropped: {e}", throttle_duration_sec=5.0)
            return
        except Exception as e:  # noqa: BLE001 - a decoder bug must not stop the node: counted, logged
            self.invalid += 1
            self.decode_errors += 1
            self.get_logger().error(f"PointCloud2 could not be decoded ({type(e).__name__}: {e}); dropped",
                                    throttle_duration_sec=5.0)
            return
        try:
            out = self.pipeline.process_scan(xyz, stamp_ns(msg.header.stamp), truth)
        except Exception as e:  # noqa: BLE001 - a bug must not stop the node; it is logged and counted
            self.errors += 1
            self.get_logger().error(f"scan at {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d} s failed: "
                                    f"{type(e).__name__}: {e}", throttle_duration_sec=5.0)
            return
        if out.inferred:
            self.publish(msg.header, out.results, truth_on)
        if out.events:
            self.publish_events(msg.header.frame_id, out.events)
        self.times.append(time.perf_counter() - t0)

    def publish(self, header: Header, results, truth_on: bool) -> None:
        names = self.runtime.bundle.class_names
        newest = Header(stamp=to_time(int(results[0].stamps[-1])), frame_id=header.frame_id)
        acts = ActivityArray(header=newest, model_id=self.model_id, source="lidar")
        markers = MarkerArray()
        truth = ActivityArray(header=newest, model_id=self.model_id, source="ground_truth")
        for r in results:
            pos = Point(x=float(r.centroid[0]), y=float(r.centroid[1]), z=float(r.centroid[2]))
            d = r.decision                                  # fused (or the window's own with fusion off)
            acts.people.append(PersonActivity(
                track_id=r.track_id, position=pos, label=d.label, class_id=d.class_id, confidence=d.confidence,
                scores=[float(x) for x in r.scores], window_start=to_time(int(r.stamps[0])),
                window_duration=self.window_s))
            self.emb_pub.publish(Embedding(header=newest, modality="pointcloud", track_id=r.track_id,
                                           frame_stamps=[to_time(int(s)) for s in r.stamps],
                                           data=[float(x) for x in r.embedding]))
            m = Marker(header=newest, ns="despite", id=r.track_id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                       text=f"{r.track_id}: {d.label} {d.confidence:.2f}", color=class_colour(d.class_id, len(names)),
                       lifetime=Duration(sec=int(self.params.marker_lifetime),
                                         nanosec=int(round(self.params.marker_lifetime % 1 * 1e9)) % 1_000_000_000))
            m.pose.position = Point(x=pos.x, y=pos.y, z=pos.z + 1.1)
            m.pose.orientation.w = 1.0
            m.scale.z = 0.3
            markers.markers.append(m)
            if truth_on:
                pid = track_person(r.extras)
                truth.people.append(PersonActivity(track_id=r.track_id, wearer_id=f"person_{pid}" if pid else "",
                                                   position=pos, window_start=to_time(int(r.stamps[0])),
                                                   window_duration=self.window_s))
        self.act_pub.publish(acts)
        self.marker_pub.publish(markers)
        if truth_on and self.truth_pub is not None:
            self.truth_pub.publish(truth)

    def publish_events(self, frame_id: str, events) -> None:
        for e in events:
            msg = ActivityEvent(header=Header(stamp=to_time(e.stamp_ns), frame_id=frame_id), track_id=e.track_id,
                                label=e.label, class_id=e.class_id, confidence=float(e.confidence),
                                start=to_time(e.start_ns), end=to_time(e.end_ns), ongoing=e.ongoing)
            if not e.repeat:                       # a segment start announced again goes to alerts only
                self.event_pub.publish(msg)
                self.events += 1
            if e.alert:
                self.alert_pub.publish(msg)
                if e.ongoing:
                    self.get_logger().warn(f"ALERT track {e.track_id}: {' then '.join(self.params.alert_sequence)} "
                                           f"({e.label} since {e.start_ns / 1e9:.2f} s, confidence {e.confidence:.2f})")

    def publish_diagnostics(self) -> None:
        now = time.monotonic()
        span = max(now - self.window_start, 1e-6)
        t = np.array(self.times) * 1e3 if self.times else np.zeros(1)
        c = self.pipeline.counts
        values = {
            "input_rate_hz": f"{self.received / span:.2f}", "scans_selected": c["selected"], "scans_skipped": c["skipped"],
            "duplicates": c["duplicate"], "backwards": c["backwards"], "invalid": self.invalid, "errors": self.errors,
            "decode_errors": self.decode_errors, "bad_stamps": c["bad_stamp"], "stamps_held": c["held"],
            "clock_jumps": c["jump"],
            "missing_periods": self.pipeline.buffers.missing_total, "inferences": c["inferences"],
            "windows": c["windows"], "tracks": len(self.pipeline.buffers.tracks),
            "processing_ms_p50": f"{np.median(t):.2f}", "processing_ms_p95": f"{np.percentile(t, 95):.2f}",
            "processing_ms_max": f"{t.max():.2f}", "provider": self.runtime.provider, "model_id": self.model_id,
            "events": self.events,
            # tracks over buffers.MAX_TRACKS, refused or evicted, by store (HarPipeline.cap_counts)
            **self.pipeline.cap_counts(),
        }
        fusion = self.pipeline.fusion
        active = fusion.active_alerts() if fusion is not None else []
        if fusion is not None and fusion.alerts_enabled:
            values["alerts"] = fusion.alerts
            values["active_alerts"] = ",".join(map(str, active))
        level = DiagnosticStatus.OK
        message = "ok"
        # the level follows the last period (totals are in the values): OK again once inputs are good
        recent = self.since({"errors": self.errors, "invalid": self.invalid,
                             "stamps": c["bad_stamp"] + c["held"] + c["backwards"] + c["jump"],
                             "capped": sum(self.pipeline.cap_counts().values())})
        if recent["errors"]:
            level, message = DiagnosticStatus.ERROR, f"{recent['errors']} scans failed in processing (see the log)"
        elif self.received == 0:
            level, message = DiagnosticStatus.WARN, "no input scans"
        elif recent["invalid"]:
            level, message = DiagnosticStatus.WARN, f"{recent['invalid']} invalid messages dropped in the last period"
        elif recent["stamps"]:
            level, message = DiagnosticStatus.WARN, f"{recent['stamps']} scans with bad or jumping stamps in the last period"
        elif recent["capped"]:
            level, message = (DiagnosticStatus.WARN, f"{recent['capped']} tracks refused or evicted in the last period: "
                              f"more than {MAX_TRACKS} at once")
        if active:                                          # an alert is never hidden by another state
            alert = (f"ALERT: {' then '.join(self.params.alert_sequence)} on track"
                     f"{'s' if len(active) > 1 else ''} {', '.join(map(str, active))}")
            level = max(level, DiagnosticStatus.WARN)                   # bytes compare by value
            message = alert if message == "ok" else f"{alert}; {message}"
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: pipeline", message=message, hardware_id="despite",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))
        self.received, self.times, self.window_start = 0, [], now


def main(args: list[str] | None = None) -> int:
    return common.main("har_node", HarNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
