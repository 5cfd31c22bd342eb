"""What both bag-eval modes check and prepare before the scans: topics, ground truth, wearers."""
from __future__ import annotations

from pathlib import Path

from despite_core.data.rosbag import BagError, iter_messages
from despite_core.runtime.buffers import NS
from despite_core.runtime.scoring import GroundTruth, LabelError

GT_TOPIC = "/ground_truth/activities"


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


def imu_pattern(pattern: str):
    """The regular expression of an Imu topic pattern with ``{wearer}`` and ``{site}``."""
    import re

    if pattern.count("{wearer}") != 1 or pattern.count("{site}") != 1:
        raise BagEvalError(f"--imu-topic {pattern!r}: the pattern needs {{wearer}} and {{site}} once each, e.g. "
                           "/{wearer}/imu/{site}")
    rx = re.escape(pattern).replace(re.escape("{wearer}"), "(?P<wearer>[^/]+)").replace(re.escape("{site}"),
                                                                                       "(?P<site>[^/]+)")
    return re.compile(f"^{rx}$")


def wearers_in(reader, pattern: str) -> set[str]:
    """Wearers that have at least one sensor_msgs/Imu topic matching the pattern in the bag."""
    rx = imu_pattern(pattern)
    return {m.group("wearer") for c in reader.connections
            if c.msgtype == "sensor_msgs/msg/Imu" and (m := rx.match(c.topic))}


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
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(present.items())) or "none"
        raise BagEvalError(f"{path}: topics {missing} not in the bag; topics present: {listing}")
    if present[points] != "sensor_msgs/msg/PointCloud2":
        raise BagEvalError(f"{path}: {points} carries {present[points]}, not sensor_msgs/msg/PointCloud2")
