"""bag-eval, offline mode: the bag's scans through HarPipeline and its IMU through WearerMatcher,
in-process and in bag order, as fast as possible (deterministic)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from despite_core.data.rosbag import bag_sha256, iter_messages, open_bag
from despite_core.data.sampling import normalise_frame
from despite_core.runtime.buffers import stamp_ns
from despite_core.runtime.scoring import GroundTruth, person_of
from despite_ros.bag_eval.common import GT_TOPIC, BagEvalError, imu_topic_table, prepare


def evaluate_offline(bag: Path, model: Path, *, segmentation: str = "live", labels: Path | None = None,
                     points_topic: str = "/lidar/points", imu_topic: str = "/{wearer}/imu/{site}",
                     wearers: list[str] | None = None, stride: int = 3, progress: bool = True) -> dict:
    """Run the pipeline over the bag in-process; returns the results dict (see :func:`write_results`)."""
    from tqdm import tqdm

    from despite_core.data.pointcloud2 import PointCloud2Error, decode_fields
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
        gt, wearers = prepare(reader, bag, labels, names, points_topic, counts, wearers)
        pipe = HarPipeline(rt, stride=stride)
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
                    names_in = [f.name for f in msg.fields]
                    fields = ["x", "y", "z"] + (["gt_person"] if "gt_person" in names_in else [])
                    cols = decode_fields(msg, fields, remove_nan_xyz=False)
                except PointCloud2Error:
                    counts["invalid"] += 1
                    continue
                xyz = np.stack([cols["x"], cols["y"], cols["z"]], 1).astype(np.float32, copy=False)
                truth = cols.get("gt_person")
                s = stamp_ns(msg.header.stamp)
                if segmentation == "live":
                    out = pipe.process_scan(xyz, s, truth)
                else:
                    if truth is None:
                        raise BagEvalError(f"{bag}: --segmentation ground-truth needs a gt_person field on {points_topic}")
                    out = _ground_truth_step(pipe, xyz, truth, s, gt)
                if not out.results:
                    continue
                for r in out.results:
                    person = track_person(r.extras)
                    board.score_window(r.stamps[-1], r.track_id, person, gt.labels(person, r.stamps) if person else [],
                                       r.class_id, r.confidence)
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
        seconds = time.perf_counter() - t0
    finally:
        reader.close()
    counts["dropped"] = pipe.buffers.missing_total
    if getattr(reader, "truncated", None):
        counts["truncated"] = reader.truncated
    summary = board.summary()
    return {**summary, "latency_ms": None, "dropped": counts["dropped"], "invalid": counts["invalid"],
            "model_id": rt.bundle.meta["model_id"], "bag_sha256": bag_sha256(bag), "bag": str(bag),
            "mode": "offline", "segmentation": segmentation, "class_names": list(names),
            "scans": counts["scans"], "imu_messages": counts["imu"], "undecodable": counts.get("undecodable", 0),
            "skipped_topics": skipped,
            "truncated": counts.get("truncated"), "interrupted": interrupted, "seconds": round(seconds, 2),
            "scans_per_second": round(counts["scans"] / seconds, 2) if seconds > 0 else None,
            "records": board.records, "latencies": []}


def _ground_truth_step(pipe, xyz: np.ndarray, truth: np.ndarray, stamp: int, gt: GroundTruth):
    """Ground-truth segmentation: every person the ground truth lists at this scan (or, without
    a ground-truth topic, every id in gt_person) is a track with its gt_person points; a fully
    occluded person is an empty frame, normalised to zeros exactly as the sequence store does."""
    from despite_core.runtime.pipeline import ScanOutput

    status = pipe.select(stamp)
    if status in ("skipped", "duplicate"):
        return ScanOutput(status)
    ids = gt.people_at(stamp) or sorted(int(i) for i in np.unique(truth) if i > 0)
    people = {}
    for pid in ids:
        pts = xyz[truth == pid]
        pts = pts[np.isfinite(pts).all(1)]
        centroid = pts.mean(0) if len(pts) else np.zeros(3, np.float32)
        people[pid] = (normalise_frame(pts, pipe.perception.cfg.points_per_frame), centroid, {pid: max(len(pts), 1)})
    return pipe.push_people(stamp, people, status)
