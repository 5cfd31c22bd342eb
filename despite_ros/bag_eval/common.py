"""What both bag-eval modes check and prepare before the scans: topics, ground truth, wearers
(the topic helpers, imu_pattern and wearers_in, are despite_core.data.rosbag's, shared with
`despite import rosbag`)."""
from __future__ import annotations

from pathlib import Path

from despite_core.data.rosbag import GT_TOPIC, BagError, iter_messages, topic_listing, wearers_in
from despite_core.runtime.buffers import NS
from despite_core.runtime.scoring import GroundTruth, LabelError

class BagEvalError(BagError):
    """The bag or the request cannot be evaluated; the message says why and what is there."""


def _ground_truth(labels: Path | None, names: list[str]) -> GroundTruth:
    if labels is None:
        return GroundTruth(list(names))
    try:
        return GroundTruth.from_sidecar(labels, names)
    except LabelError as e:
        raise BagEvalError(str(e)) from None


def prepare(reader, bag: Path, labels: Path | None, names: list[str], points_topic: str, counts: dict,
             wearers: list[str] | None, imu_topic: str = "/{wearer}/imu/{site}") -> tuple[GroundTruth, list[str]]:
    """What both modes need before the scans: the topics checked, the ground truth (the label
    file, or the bag's label topic read in a first pass: a scan is written before its label
    message, and ground-truth segmentation needs the people listed at each scan), and the wearers
    (given: each must have Imu topics in the bag; else every wearer of a topic matching ``imu_topic``)."""
    check_topics(reader, points_topic, labels is None, bag)
    found = wearers_in(reader, imu_topic)
    if wearers is not None:
        ghosts = [w for w in wearers if w not in found]
        if ghosts:
            raise BagEvalError(f"{bag}: no Imu topic matching {imu_topic!r} for wearers {ghosts}; wearers with "
                               f"such topics: {sorted(found) or 'none'}")
    gt = _ground_truth(labels, names)
    check_overlap(gt, reader, bag)
    topics = {c.topic for c in reader.connections}
    if GT_TOPIC in topics:
        for _, _, msg in iter_messages(reader, {GT_TOPIC}, counts):
            gt.add_message(msg)
    return gt, (list(wearers) if wearers is not None else sorted(found))


def imu_topic_table(pattern: str, wearers: list[str], sites) -> dict[str, tuple[str, str]]:
    """Imu topic -> (wearer, site) for the bundle's IMU sites."""
    return {pattern.format(wearer=w, site=site): (w, site) for w in wearers for site in sites}


def check_overlap(gt: GroundTruth, reader, bag: Path) -> None:
    """Sidecar segments must overlap the bag's time: a file in another time base would otherwise
    match no frame and every window would silently be unlabelled."""
    if not gt.segments:
        return
    lo, hi = min(a for a, *_ in gt.segments), max(b for _, b, *_ in gt.segments)
    slack = 60 * NS                                        # header stamps vs bag (log) time
    if hi < reader.start_time - slack or lo > reader.end_time + slack:
        raise BagEvalError(f"the label file's segments ({lo / NS:.1f}-{hi / NS:.1f} s) do not overlap the bag "
                           f"({reader.start_time / NS:.1f}-{reader.end_time / NS:.1f} s): times are message stamps in "
                           "seconds since the epoch, as in the bag's headers")


def check_topics(reader, points: str, gt_needed: bool, path: Path) -> None:
    present = {c.topic: c.msgtype for c in reader.connections}
    missing = [t for t in [points] + ([GT_TOPIC] if gt_needed else []) if t not in present]
    if missing:
        raise BagEvalError(f"{path}: topics {missing} not in the bag; topics present: {topic_listing(reader)}")
    if present[points] != "sensor_msgs/msg/PointCloud2":
        raise BagEvalError(f"{path}: {points} carries {present[points]}, not sensor_msgs/msg/PointCloud2")
