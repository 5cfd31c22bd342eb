"""bag-eval, replay mode: the bag published onto DDS at its recorded timing for har_node and
matching_node (started with bringup); what they publish is recorded and scored, and latency is
measured from each scan's publication. Needs rclpy."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from despite_core.data.rosbag import bag_sha256, open_bag, reader_faults
from despite_core.runtime.buffers import NS, stamp_ns
from despite_core.runtime.fusion import FusionConfig
from despite_core.runtime.scoring import fusion_metrics, live_vs_truth
from despite_ros.bag_eval.common import BagEvalError, imu_topic_table, prepare
from despite_ros.bag_eval.offline import NOT_MEASURED, truth_windows


def evaluate_replay(bag: Path, model: Path, *, rate: float = 1.0, labels: Path | None = None,
                    points_topic: str = "/lidar/points", imu_topic: str = "/{wearer}/imu/{site}",
                    wearers: list[str] | None = None, stride: int = 3, record: Path | None = None,
                    progress: bool = True, settle: float = 3.0, fusion: FusionConfig | None = FusionConfig()) -> dict:
    """Publish the bag onto DDS with its timing (divided by ``rate``) for har_node and matching_node
    (started here with bringup), record what they publish, score it; latency from publication.
    ``fusion``: har_node's fusion settings (None: fusion off)."""
    import os

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Imu, PointCloud2
    from tqdm import tqdm

    from despite_ros.bringup import Bringup, plan as launch_plan, use_shipped_dds_profile
    from despite_core.runtime.inference import load_bundle
    from despite_ros.live_score import LiveScorer

    if rate <= 0:
        raise BagEvalError(f"--rate must be > 0, got {rate}")
    if record is not None and (record.exists() or not record.parent.is_dir()):
        raise BagEvalError(f"--record {record}: " + ("exists; --record writes a new bag" if record.exists()
                                                      else "its parent directory does not exist"))
    bundle = load_bundle(model)
    names = bundle.class_names
    gt, wearers, imu_topics, tw, plan, counts = load_replay(bag, bundle, labels, points_topic, imu_topic, wearers,
                                                            stride)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    pipeline = {"stride": int(stride), "truth_field": "gt_person", "fusion": fusion is not None}
    if fusion is not None:
        pipeline.update({"fusion_switch_rate": float(fusion.switch_rate), "fusion_sharpness": float(fusion.sharpness),
                         "alert_sequence": list(fusion.alert_sequence) or [""],
                         **{k: float(getattr(fusion, k)) for k in FusionConfig.ALERT_PARAMS}})
    args = {"model": str(model), "points_topic": points_topic, "imu_topic": imu_topic,
            **({"wearers": ",".join(wearers)} if wearers else {})}
    nodes = ("har_node", "matching_node") if wearers else ("har_node",)
    use_shipped_dds_profile()
    devnull = open(os.devnull, "w")
    b = Bringup(launch_plan(args, overrides={"har_node": pipeline}, only=nodes), stdout=devnull)
    ctx = rclpy.Context()
    # Ctrl-C stays Python's KeyboardInterrupt (cli.main installs it): rclpy's own handler would also
    # shut the context down behind the replay loop, racing the score and the recording
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("despite_bag_replay", context=ctx)
    try:
        b.start()
    except BaseException:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        devnull.close()
        raise
    scorer = LiveScorer(node, gt, subscribe_gt=False, keep_messages=record is not None)
    from diagnostic_msgs.msg import DiagnosticArray

    node_diag: dict[str, str] = {}

    def on_diag(msg) -> None:
        for st in msg.status:
            if st.name.startswith("har_node"):
                node_diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pubs = {points_topic: node.create_publisher(PointCloud2, points_topic, qos_profile_sensor_data)}
    for t in imu_topics:
        pubs[t] = node.create_publisher(Imu, t, qos_profile_sensor_data)
    types = {points_topic: PointCloud2, **{t: Imu for t in imu_topics}}
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    published: dict[int, float] = {}
    interrupted = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (pubs[points_topic].get_subscription_count() == 0
                                               or node.count_publishers("/despite/activities") == 0):
            ex.spin_once(timeout_sec=0.1)
            if (done := b.poll()) is not None:
                raise BagEvalError(f"{done[0]} exited with code {done[1]} before the replay started")
        if pubs[points_topic].get_subscription_count() == 0:
            raise BagEvalError("har_node did not subscribe within 60 s")
        time.sleep(1.0)
        t_bag0 = plan[0][1] if plan else 0
        t_wall0 = time.perf_counter()
        bar = tqdm(total=len(plan), unit="msg", desc="replay", disable=not progress)
        try:
            for i, (topic, t, raw) in enumerate(plan):
                if i % 50 == 0 and (done := b.poll()) is not None:     # a dead node makes every score wrong
                    raise BagEvalError(f"{done[0]} exited with code {done[1]} during the replay (message {i} of "
                                       f"{len(plan)}): no score is written; run the node alone to see why")
                due = t_wall0 + (t - t_bag0) / NS / rate
                while (wait := due - time.perf_counter()) > 0:
                    ex.spin_once(timeout_sec=min(wait, 0.005))
                try:
                    msg = deserialize_message(bytes(raw), types[topic])
                except Exception:  # a corrupt message: counted, not published
                    counts["invalid"] += 1
                    continue
                if topic == points_topic:
                    published[stamp_ns(msg.header.stamp)] = time.perf_counter()
                pubs[topic].publish(msg)
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        end = time.monotonic() + (min(settle, 1.0) if interrupted else settle)
        try:                                     # a second Ctrl-C ends the wait, never the recording
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.05)
        except KeyboardInterrupt:
            interrupted = True
        if (done := b.poll()) is not None:
            raise BagEvalError(f"{done[0]} exited with code {done[1]} during the replay: no score is written")
        scorer.score_ready(settle=0.0)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        b.stop()
        devnull.close()
    latencies = [(arr - published[s]) * 1e3 for s, arr in scorer.arrivals.items() if s in published]
    selected = len(published)
    summary = scorer.board.summary()
    if record is not None:
        _record(record, scorer.messages)
    lat = np.asarray(latencies) if latencies else None
    perception = live_vs_truth(tw[0], scorer.board.records, tw[1]) if tw is not None else dict(NOT_MEASURED)
    events = scorer.closed_events()
    fused = (fusion_metrics(gt, scorer.board.records, events, fusion.alert_sequence) if fusion is not None
             else {"segment_f1": None, "alerts": None})
    return {**summary, **perception, **fused, "fusion": fusion is not None,
            "latency_ms": None if lat is None else {"p50": round(float(np.median(lat)), 2),
                                                    "p95": round(float(np.percentile(lat, 95)), 2),
                                                    "max": round(float(lat.max()), 2)},
            # har_node's own counts (its last /diagnostics): model periods without a scan, bad clouds
            "dropped": int(node_diag["missing_periods"]) if "missing_periods" in node_diag else None,
            "invalid": counts["invalid"] + int(node_diag.get("invalid", 0)),
            "node_scans_selected": int(node_diag["scans_selected"]) if "scans_selected" in node_diag else None,
            "model_id": bundle.meta["model_id"],
            "bag_sha256": bag_sha256(bag), "bag": str(bag), "mode": "replay", "rate": rate, "segmentation": "live",
            "class_names": list(names), "scans": selected, "scans_per_second": None, "interrupted": interrupted,
            "undecodable": counts.get("undecodable", 0), "truncated": counts.get("truncated"),
            "corrupt_chunks": counts.get("corrupt_chunks", 0),
            "records": scorer.board.records, "events": events, "latencies": latencies}


def load_replay(bag: Path, bundle, labels: Path | None, points_topic: str, imu_topic: str,
                wearers: list[str] | None, stride: int) -> tuple:
    """What the replay needs before any DDS: (ground truth, wearers, the Imu topics to publish, the
    truth windows or None, the plan [(topic, log time, raw CDR)] in bag order, counts). ``counts``
    holds the bag's faults, ``corrupt_chunks`` and ``truncated`` included, whatever the clouds
    carry (with no gt_person field the truth windows stop at the first scan)."""
    from despite_core.runtime.inference import Runtime

    reader = open_bag(bag)
    counts: dict = {"invalid": 0}
    try:
        gt, wearers = prepare(reader, bag, labels, bundle.class_names, points_topic, counts, wearers, imu_topic)
        topics = {c.topic: c for c in reader.connections}
        imu_topics = [t for t in imu_topic_table(imu_topic, wearers, bundle.imu_layout.sites) if t in topics]
        tw = truth_windows(reader, points_topic, gt, Runtime(bundle, providers="cpu"), stride, counts)
        plan = [(conn.topic, t, raw) for conn, t, raw in
                reader.messages(connections=[topics[points_topic], *(topics[t] for t in imu_topics)])]
        reader_faults(reader, counts)                  # the plan is read from the reader directly
    finally:
        reader.close()
    return gt, wearers, imu_topics, tw, plan, counts


def _record(path: Path, messages: list) -> None:
    """The nodes' outputs, as received, into a new bag in rosbag2's layout (BagWriter: a directory
    NAME/NAME_0.mcap + metadata.yaml, or one NAME.mcap file; raw CDR from rclpy)."""
    from rclpy.serialization import serialize_message

    from despite_core.data.rosbag import BagWriter

    types = {"/despite/activities": "despite_ros/msg/ActivityArray", "/despite/imu_activities": "despite_ros/msg/ActivityArray",
             "/despite/matches": "despite_ros/msg/MatchArray", "/despite/events": "despite_ros/msg/ActivityEvent",
             "/despite/alerts": "despite_ros/msg/ActivityEvent"}
    with BagWriter(path) as w:
        conns = {t: w.add_connection(t, m) for t, m in types.items()}
        for topic, _, msg in messages:
            w.write(conns[topic], stamp_ns(msg.header.stamp), serialize_message(msg))
