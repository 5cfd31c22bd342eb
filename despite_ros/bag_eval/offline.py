"""bag-eval, offline mode: the bag's scans through HarPipeline and its IMU through WearerMatcher,
in-process and in bag order, as fast as possible (deterministic)."""
from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import numpy as np

from despite_core.data.rosbag import GT_TOPIC, bag_sha256, iter_messages, open_bag
from despite_core.runtime.buffers import NS, stamp_ns
from despite_core.runtime.fusion import FusionConfig
from despite_core.runtime.scoring import GroundTruth, fusion_metrics, live_vs_truth, person_of, truth_window
from despite_ros.bag_eval.common import BagEvalError, imu_topic_table, prepare


def evaluate_offline(bag: Path, model: Path, *, segmentation: str = "live", labels: Path | None = None,
                     points_topic: str = "/lidar/points", imu_topic: str = "/{wearer}/imu/{site}",
                     wearers: list[str] | None = None, stride: int = 3, progress: bool = True,
                     fusion: FusionConfig | None = FusionConfig(), keep_batches: bool = False) -> dict:
    """Run the pipeline over the bag in-process; returns the results dict (see :func:`write_results`).
    ``fusion``: the temporal fusion scored (None: windows only, no segments). ``keep_batches``: also
    return each inference batch's windows (``batches``: [(stamp, [(track, stamps, scores, true
    person, frame labels, raw centroids (T, 3), raw extents (T, 2))])]) and the ground truth
    (``ground_truth``), to rescore other fusion settings without running the model again
    (bench/fusion_sweep.py)."""
    from tqdm import tqdm

    from despite_core.data.pointcloud2 import PointCloud2Error, decode_points
    from despite_core.runtime.buffers import imu_values_of
    from despite_core.runtime.inference import Runtime
    from despite_core.runtime.pipeline import HarPipeline, WearerMatcher
    from despite_core.runtime.scoring import Scoreboard, track_person

    if segmentation not in ("live", "ground-truth"):
        raise BagEvalError(f"segmentation must be live or ground-truth, got {segmentation!r}")
    rt = Runtime(model, providers="cpu")
    names = rt.bundle.class_names
    reader = open_bag(bag)
    counts: dict = {"invalid": 0, "scans": 0, "imu": 0, "dropped": 0}
    try:
        gt, wearers = prepare(reader, bag, labels, names, points_topic, counts, wearers, imu_topic)
        pipe = HarPipeline(rt, stride=stride, fusion=fusion)
        events, batches = [], []
        topics = {c.topic for c in reader.connections}
        imu_topics = {}
        matcher = None
        if wearers and rt.has("imu_encoder"):
            matcher = WearerMatcher(rt, wearers)
            imu_topics = imu_topic_table(imu_topic, wearers, matcher.layout.sites)
        wanted = {points_topic, *imu_topics} & topics
        skipped = {c.topic: c.msgcount for c in reader.connections if c.topic not in wanted | {GT_TOPIC}}
        board = Scoreboard(list(names))
        total = sum(c.msgcount for c in reader.connections if c.topic == points_topic)
        bar = tqdm(total=total, unit="scan", desc="bag-eval", disable=not progress)
        t0 = time.perf_counter()
        interrupted = False
        try:
            for topic, _, msg in iter_messages(reader, wanted, counts):
                if topic in imu_topics:
                    if matcher is not None:
                        w, site = imu_topics[topic]
                        status = matcher.wearers[w].push(site, stamp_ns(msg.header.stamp), imu_values_of(msg))
                        counts["imu"] += 1
                        counts["invalid"] += status == "invalid"
                    continue
                bar.update(1)
                counts["scans"] += 1
                try:
                    names_in = [str(f.name) for f in msg.fields]
                    xyz, cols = decode_points(msg, ["gt_person"] if "gt_person" in names_in else [])
                except PointCloud2Error:
                    counts["invalid"] += 1
                    continue
                truth = cols.get("gt_person")
                s = stamp_ns(msg.header.stamp)
                if segmentation == "live":
                    out = pipe.process_scan(xyz, s, truth)
                else:
                    if truth is None:
                        raise BagEvalError(f"{bag}: --segmentation ground-truth needs a gt_person field on {points_topic}")
                    out = pipe.process_ground_truth(xyz, s, truth, gt.people_at(s))
                events += out.events
                if not out.results:
                    continue
                batch = []
                for r in out.results:
                    person = track_person(r.extras)
                    d = r.decision
                    frame_labels = gt.labels(person, r.stamps) if person else []
                    board.score_window(r.stamps[-1], r.track_id, person, frame_labels, d.class_id, d.confidence,
                                       raw=r.class_id)
                    batch.append((r.track_id, r.stamps, r.scores, person, frame_labels, r.centroids, r.extents))
                if keep_batches:
                    batches.append((s, batch))
                if matcher is not None:
                    res = matcher.match(out.results[0].stamps, [r.track_id for r in out.results],
                                        np.stack([r.embedding for r in out.results]))
                    persons = {r.track_id: track_person(r.extras) for r in out.results}
                    for wid, tid in res.assigned.items():
                        board.add_match(wid, person_of(wid), persons[tid])
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        events += pipe.flush()
        seconds = time.perf_counter() - t0
        perception = (perception_metrics(reader, points_topic, gt, rt, stride, {}, board.records)
                      if segmentation == "live" and not interrupted else dict(NOT_MEASURED))
    finally:
        reader.close()
    counts["dropped"] = pipe.buffers.missing_total
    if getattr(reader, "truncated", None):
        counts["truncated"] = reader.truncated
    summary = board.summary()
    fused = (fusion_metrics(gt, board.records, events, fusion.alert_sequence) if fusion is not None
             else {"segment_f1": None, "alerts": None})
    return {**summary, **perception, **fused, "fusion": fusion is not None, "latency_ms": None, "dropped": counts["dropped"], "invalid": counts["invalid"],
            "model_id": rt.bundle.meta["model_id"], "bag_sha256": bag_sha256(bag), "bag": str(bag),
            "mode": "offline", "segmentation": segmentation, "class_names": list(names),
            "scans": counts["scans"], "imu_messages": counts["imu"], "undecodable": counts.get("undecodable", 0),
            "corrupt_chunks": counts.get("corrupt_chunks", 0),
            "skipped_topics": skipped,
            "truncated": counts.get("truncated"), "interrupted": interrupted, "seconds": round(seconds, 2),
            "scans_per_second": round(counts["scans"] / seconds, 2) if seconds > 0 else None,
            "records": board.records, "events": events, "latencies": [],
            **({"batches": batches, "ground_truth": gt} if keep_batches else {})}


NOT_MEASURED = {"coverage": None, "recall": None, "false_tracks_per_minute": None, "id_switches_per_person_minute": None}


def truth_windows(reader, points_topic: str, gt: GroundTruth, runtime, stride: int,
                  counts: dict) -> tuple[dict, float] | None:
    """The bag's ground-truth person-windows (what ``--segmentation ground-truth`` scores, cut on
    the same frame grid and stride, without inference) and the scans' time span (s); None when
    the clouds carry no gt_person field. The reader's faults (corrupt chunks) reach ``counts``
    either way."""
    from despite_core.data.pointcloud2 import PointCloud2Error, decode_points
    from despite_core.runtime.pipeline import HarPipeline

    pipe = HarPipeline(runtime, stride=stride, infer=False)
    out: dict = {}
    prev, seconds, seen = None, 0.0, False
    jump = pipe.buffer_cfg.max_jump * NS
    with closing(iter_messages(reader, {points_topic}, counts)) as messages:    # closed on the early return too
        for _, _, msg in messages:
            if not any(f.name == "gt_person" for f in msg.fields):
                return None
            try:
                xyz, cols = decode_points(msg, ["gt_person"])
            except PointCloud2Error:
                continue
            s = stamp_ns(msg.header.stamp)
            res = pipe.process_ground_truth(xyz, s, cols["gt_person"], gt.people_at(s))
            # the scored time: steps between consecutive scans, without jumps (an outlier stamp must not
            # turn one minute into years, nor cost the step to the scan after it)
            if res.status not in ("held", "bad_stamp"):
                if prev is not None and 0 < s - prev <= jump:
                    seconds += (s - prev) / NS
                prev, seen = s, True
            for r in res.results:
                w = truth_window(gt, r)
                if w is not None:
                    out[w[0]] = w[1]
    return (out, seconds) if seen else None


def perception_metrics(reader, points_topic: str, gt: GroundTruth, runtime, stride: int, counts: dict,
                       records: list[dict]) -> dict:
    """coverage, recall, false tracks and id switches of the live windows ``records`` against the
    bag's ground-truth person-windows (all None without a gt_person field)."""
    tw = truth_windows(reader, points_topic, gt, runtime, stride, counts)
    return dict(NOT_MEASURED) if tw is None else live_vs_truth(tw[0], records, tw[1])
