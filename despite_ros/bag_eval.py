"""`despite-ros bag-eval`: score the live pipeline on a recorded rosbag2 bag (MCAP or sqlite3,
read with rosbags: no ROS install needed), with the same runtime, buffers and scoring as the nodes.

Modes:
- ``offline``: in-process and deterministic, as fast as possible: the bag's scans go through
  HarPipeline, its IMU through WearerMatcher, in bag order.
- ``replay``: the bag's scans and IMU are published onto DDS at their recorded timing (times
  ``--rate``) for har_node and matching_node started with bringup; their outputs are recorded and
  scored, and latency is measured from each scan's publication to the ActivityArray ending with it.

Segmentation (offline): ``live`` runs perception and tracking; ``ground-truth`` cuts each person's
points by the cloud's ``gt_person`` field (track id = person id), so the gap between the two is
the cost of perception and tracking.

Ground truth: the bag's ``/ground_truth/activities`` (ActivityArray, as `despite synth` writes)
or a sidecar file of labelled segments (docs/bag-eval.md): CSV with a header
``start,end,label[,person]`` or JSON ``[{"start":..., "end":..., "label":..., "person":...}]``;
times in seconds (bag time), ``person`` a ground-truth person id or ``person_<k>`` (empty: every
person). Each window is scored by the fixed rules of despite_ros.scoring.
"""
from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from despite_core.data.sampling import normalise_frame

NS = 1_000_000_000
GT_TOPIC = "/ground_truth/activities"
STAMP_TOLERANCE_NS = 1_000_000          # a label message belongs to the scan within 1 ms of it


class BagEvalError(ValueError):
    """The bag or the request cannot be evaluated; the message says why and what is there."""


def bag_sha256(path: Path) -> str:
    """sha256 over the bag's files (a directory: its files in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class GroundTruth:
    """Per-person labels by stamp (from the bag's topic) or labelled time segments (sidecar)."""

    class_names: list[str]
    by_stamp: dict[int, dict[int, int]] = field(default_factory=dict)     # person -> stamp -> class
    segments: list[tuple[int, int, int, int | None]] = field(default_factory=list)   # start, end, class, person

    def add_message(self, msg) -> None:
        s = int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)
        for p in msg.people:
            cid = int(p.class_id)
            self.by_stamp.setdefault(int(p.track_id), {})[s] = cid if cid < len(self.class_names) else -1

    def people_at(self, stamp: int) -> list[int]:
        """The people the label messages list at ``stamp`` (within the stamp tolerance)."""
        out = []
        for pid, d in self.by_stamp.items():
            keys = self._keys(pid)
            j = int(np.searchsorted(keys, stamp))
            near = [k for k in keys[max(j - 1, 0):j + 1] if abs(int(k) - stamp) <= STAMP_TOLERANCE_NS]
            if near:
                out.append(pid)
        return sorted(out)

    def _keys(self, pid: int) -> np.ndarray:
        return self._table(pid)[0]

    def _table(self, pid: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted stamps, labels) of a person, cached until new messages arrive."""
        cache = self.__dict__.setdefault("_cache", {})
        d = self.by_stamp[pid]
        if pid not in cache or len(cache[pid][0]) != len(d):
            keys = np.array(sorted(d), np.int64)
            cache[pid] = (keys, np.array([d[int(k)] for k in keys], np.int64))
        return cache[pid]

    def labels(self, person: int, stamps: np.ndarray) -> list[int]:
        if self.segments:
            out = []
            for s in stamps:
                hit = [c for a, b, c, who in self.segments if a <= s < b and who in (None, person)]
                out.append(hit[0] if hit else -1)
            return out
        d = self.by_stamp.get(person, {})
        if not d:
            return [-1] * len(stamps)
        keys, vals = self._table(person)
        q = np.asarray(stamps, np.int64)
        i = np.clip(np.searchsorted(keys, q), 1, len(keys) - 1) if len(keys) > 1 else np.zeros(len(q), np.int64)
        i = np.where(np.abs(keys[i - 1] - q) < np.abs(keys[i] - q), i - 1, i) if len(keys) > 1 else i
        # The label message of a scan and the scan itself may disagree by a rounding nanosecond.
        return [int(vals[j]) if abs(int(keys[j]) - int(t)) <= STAMP_TOLERANCE_NS else -1 for j, t in zip(i, q)]

    @classmethod
    def from_sidecar(cls, path: Path, class_names: list[str]) -> "GroundTruth":
        if not path.is_file():
            raise BagEvalError(f"{path}: label file not found")
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
        else:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        gt = cls(list(class_names))
        for i, r in enumerate(rows):
            try:
                start, end, label = float(r["start"]), float(r["end"]), str(r["label"]).strip()
            except (KeyError, TypeError, ValueError):
                raise BagEvalError(f"{path}: row {i + 1} needs start, end (seconds) and label; got {r}") from None
            if label not in class_names:
                raise BagEvalError(f"{path}: row {i + 1}: label {label!r} is not a class of the model {class_names}")
            if end <= start:
                raise BagEvalError(f"{path}: row {i + 1}: end {end} is not after start {start}")
            who = str(r.get("person") or "").strip()
            person = int(who.rsplit("_", 1)[-1]) if who else None
            gt.segments.append((int(round(start * NS)), int(round(end * NS)), class_names.index(label), person))
        return gt


def open_bag(path: Path):
    """A rosbags AnyReader over the bag (MCAP or sqlite3) with despite_ros's types; clear errors."""
    from rosbags.highlevel import AnyReader

    from despite_core.data.rosbag import typestore

    if not path.exists():
        raise BagEvalError(f"{path}: bag not found")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as e:  # rosbags raises several reader errors for broken bags
        raise BagEvalError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None
    return reader


def _check_topics(reader, points: str, gt_needed: bool, path: Path) -> None:
    present = {c.topic: c.msgtype for c in reader.connections}
    missing = [t for t in [points] + ([GT_TOPIC] if gt_needed else []) if t not in present]
    if missing:
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(present.items())) or "none"
        raise BagEvalError(f"{path}: topics {missing} not in the bag; topics present: {listing}")
    if present[points] != "sensor_msgs/msg/PointCloud2":
        raise BagEvalError(f"{path}: {points} carries {present[points]}, not sensor_msgs/msg/PointCloud2")


def iter_messages(reader, topics: set[str], counts: dict):
    """(topic, log time ns, message) in bag order; messages that cannot be decoded are counted."""
    conns = [c for c in reader.connections if c.topic in topics]
    try:
        for conn, t, raw in reader.messages(connections=conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # an unknown or corrupt message: skipped and counted
                counts["undecodable"] = counts.get("undecodable", 0) + 1
                continue
            yield conn.topic, t, msg
    except Exception as e:  # a truncated final chunk: keep what was read
        counts["truncated"] = f"{type(e).__name__}: {e}"


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


@dataclass
class Record:
    """One scored (or counted) window."""

    stamp: int
    track: int
    person: int
    true: int
    predicted: int
    confidence: float
    outcome: str


def evaluate_offline(bag: Path, model: Path, *, segmentation: str = "live", labels: Path | None = None,
                     points_topic: str = "/lidar/points", imu_topic: str = "/{wearer}/imu/{site}",
                     wearers: list[str] | None = None, stride: int = 3, progress: bool = True) -> dict:
    """Run the pipeline over the bag in-process; returns the results dict (see :func:`write_results`)."""
    from tqdm import tqdm

    from despite_core.data.pointcloud2 import PointCloud2Error, decode_fields
    from despite_ros.buffers import imu_message_values
    from despite_ros.inference import Runtime
    from despite_ros.pipeline import HarPipeline, WearerMatcher
    from despite_ros.scoring import Scoreboard, track_person

    if segmentation not in ("live", "ground-truth"):
        raise BagEvalError(f"segmentation must be live or ground-truth, got {segmentation!r}")
    rt = Runtime(model, providers="cpu")
    names = rt.bundle.class_names
    reader = open_bag(bag)
    counts: dict = {"invalid": 0, "scans": 0, "imu": 0, "dropped": 0}
    try:
        _check_topics(reader, points_topic, labels is None or segmentation == "ground-truth", bag)
        gt = GroundTruth.from_sidecar(labels, names) if labels is not None else GroundTruth(list(names))
        if GT_TOPIC in {c.topic for c in reader.connections}:
            # First pass: the labels (small). A scan is written before its label message, and
            # ground-truth segmentation needs the people listed at each scan.
            for _, _, msg in iter_messages(reader, {GT_TOPIC}, counts):
                gt.add_message(msg)
        pipe = HarPipeline(rt, stride=stride)
        topics = {c.topic for c in reader.connections}
        imu_topics = {}
        if wearers is None:
            wearers = sorted({t.split("/")[1] for t in topics if "/imu/" in t})
        matcher = None
        if wearers and rt.has("imu_encoder"):
            matcher = WearerMatcher(rt, wearers)
            for w in wearers:
                for site in matcher.layout.sites:
                    imu_topics[imu_topic.format(wearer=w, site=site)] = (w, site)
        wanted = {points_topic, *imu_topics} & topics
        board = Scoreboard(list(names))
        records: list[Record] = []
        total = sum(c.msgcount for c in reader.connections if c.topic == points_topic)
        bar = tqdm(total=total, unit="scan", desc="bag-eval", disable=not progress)
        t0 = time.perf_counter()
        interrupted = False
        try:
            for topic, _, msg in iter_messages(reader, wanted, counts):
                if topic in imu_topics:
                    if matcher is not None:
                        w, site = imu_topics[topic]
                        o, g, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
                        status = matcher.wearers[w].push(site, _stamp(msg), imu_message_values(
                            (o.w, o.x, o.y, o.z), (g.x, g.y, g.z), (a.x, a.y, a.z)))
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
                s = _stamp(msg)
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
                    frame_labels = gt.labels(person, r.stamps) if person else []
                    outcome = board.add_window(person, frame_labels, r.class_id)
                    true = -1 if not frame_labels else _majority(frame_labels)
                    records.append(Record(int(r.stamps[-1]), r.track_id, person, true, r.class_id, r.confidence, outcome))
                if matcher is not None:
                    res = matcher.match(out.results[0].stamps, [r.track_id for r in out.results],
                                        np.stack([r.embedding for r in out.results]))
                    persons = {r.track_id: track_person(r.extras) for r in out.results}
                    for wid, tid in res.assigned.items():
                        board.add_match(wid, int(wid.rsplit("_", 1)[-1]) if wid.rsplit("_", 1)[-1].isdigit() else -1,
                                        persons[tid])
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        seconds = time.perf_counter() - t0
    finally:
        reader.close()
    counts["dropped"] = pipe.buffers.missing_total
    summary = board.summary()
    return {**summary, "latency_ms": None, "dropped": counts["dropped"], "invalid": counts["invalid"],
            "model_id": rt.bundle.meta["model_id"], "bag_sha256": bag_sha256(bag), "bag": str(bag),
            "mode": "offline", "segmentation": segmentation, "class_names": list(names),
            "scans": counts["scans"], "imu_messages": counts["imu"], "undecodable": counts.get("undecodable", 0),
            "truncated": counts.get("truncated"), "interrupted": interrupted, "seconds": round(seconds, 2),
            "scans_per_second": round(counts["scans"] / seconds, 2) if seconds > 0 else None,
            "records": [r.__dict__ for r in records]}


def _majority(labels: list[int]) -> int:
    vals, cnt = np.unique(np.asarray(labels), return_counts=True)
    return int(vals[np.argmax(cnt)])


def _ground_truth_step(pipe, xyz: np.ndarray, truth: np.ndarray, stamp: int, gt: GroundTruth):
    """Ground-truth segmentation: every person the ground truth lists at this scan (or, without
    a ground-truth topic, every id in gt_person) is a track with its gt_person points; a fully
    occluded person is an empty frame, normalised to zeros exactly as the sequence store does."""
    from despite_ros.pipeline import ScanOutput

    status = pipe.selector.offer(stamp)
    pipe.counts[status] += 1
    if status in ("skipped", "duplicate"):
        return ScanOutput(status)
    if status == "backwards":
        pipe.reset()
        pipe.selector.offer(stamp)
    ids = gt.people_at(stamp) or sorted(int(i) for i in np.unique(truth) if i > 0)
    people = {}
    for pid in ids:
        pts = xyz[truth == pid]
        pts = pts[np.isfinite(pts).all(1)]
        centroid = pts.mean(0) if len(pts) else np.zeros(3, np.float32)
        people[pid] = (normalise_frame(pts, pipe.perception.cfg.points_per_frame), centroid, {pid: max(len(pts), 1)})
    return pipe.push_people(stamp, people, status)


RESULT_KEYS = ("accuracy", "macro_f1", "windows", "ambiguous", "unassociated", "per_class", "confusion",
               "matching_accuracy", "latency_ms", "dropped", "invalid", "model_id", "bag_sha256")


def write_results(result: dict, out: Path) -> dict:
    """results.json, confusion.png, timeline.png, latency.png (replay) and report.html in ``out``."""
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from despite_core.evaluate.har import plot_confusion

    out.mkdir(parents=True, exist_ok=True)
    records = result.pop("records", [])
    latencies = result.pop("latencies", [])
    (out / "results.json").write_text(json.dumps(result, indent=1))
    with (out / "windows.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stamp_s", "track", "person", "true", "predicted", "confidence", "outcome"])
        for r in records:
            w.writerow([f"{r['stamp'] / NS:.3f}", r["track"], r["person"], r["true"], r["predicted"],
                        f"{r['confidence']:.3f}", r["outcome"]])
    names = result["class_names"]
    pngs = []
    if result["confusion"]:
        plot_confusion({"confusion": result["confusion"], "class_names": names, "accuracy": result["accuracy"],
                        "macro_f1": result["macro_f1"]}, str(out / "confusion.png"))
        pngs.append(("confusion.png", "Confusion matrix (windows scored by the fixed rules)"))
    if records:
        tracks = sorted({r["track"] for r in records})
        t0 = min(r["stamp"] for r in records)
        fig, axes = plt.subplots(len(tracks), 1, figsize=(10, 1.6 * len(tracks) + 1), squeeze=False, sharex=True)
        for ax, tid in zip(axes[:, 0], tracks):
            rs = [r for r in records if r["track"] == tid]
            t = [(r["stamp"] - t0) / NS for r in rs]
            ax.plot(t, [r["true"] for r in rs], "k.", ms=6, label="true")
            ax.plot(t, [r["predicted"] if 0 <= r["predicted"] < len(names) else -1 for r in rs], "rx", ms=4,
                    label="predicted")
            ax.set_yticks(range(len(names)), names, fontsize=6)
            ax.set_ylabel(f"track {tid}", fontsize=8)
        axes[0, 0].legend(loc="upper right", fontsize=7)
        axes[-1, 0].set_xlabel("s")
        fig.tight_layout()
        fig.savefig(out / "timeline.png", dpi=90)
        plt.close(fig)
        pngs.append(("timeline.png", "True (dots) vs predicted (crosses) label per track over time"))
    if latencies:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(latencies, bins=30)
        ax.set_xlabel("scan publication -> ActivityArray receipt, ms")
        ax.set_ylabel("windows")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=90)
        plt.close(fig)
        pngs.append(("latency.png", "Latency histogram"))
    fmt = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = "".join(f"<tr><th>{k}</th><td>{fmt(result.get(k))}</td></tr>" for k in
                   ("accuracy", "macro_f1", "windows", "ambiguous", "unassociated", "dropped", "invalid", "model_id",
                    "mode", "segmentation", "scans", "scans_per_second"))
    match = "".join(f"<tr><th>{k}</th><td>{fmt(v)}</td></tr>" for k, v in result["matching_accuracy"].items())
    lat = result.get("latency_ms") or {}
    lat_rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in lat.items())
    imgs = "".join(f"<h2>{title}</h2><img src='data:image/png;base64,"
                   f"{base64.b64encode((out / f).read_bytes()).decode()}'/>" for f, title in pngs)
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>despite bag-eval</title><style>"
            f"body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} th,td{{border:1px solid #ccc;"
            f"padding:3px 8px;text-align:left}}</style></head><body><h1>despite bag-eval</h1>"
            f"<p>bag <code>{result['bag']}</code> (sha256 {result['bag_sha256'][:16]}...)</p>"
            f"<table>{rows}</table><h2>Wearer matching accuracy</h2><table>{match}</table>"
            f"{'<h2>Latency (ms)</h2><table>' + lat_rows + '</table>' if lat_rows else ''}{imgs}</body></html>")
    (out / "report.html").write_text(html)
    return result
