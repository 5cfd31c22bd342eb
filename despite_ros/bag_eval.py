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
times in seconds since the epoch (the messages' header stamps), ``person`` a ground-truth person id or ``person_<k>`` (empty: every
person). Each window is scored by the fixed rules of despite_ros.scoring.
"""
from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from despite_core.bundle import hash_file
from despite_core.data.sampling import normalise_frame
from despite_ros.buffers import NS, stamp_ns
from despite_ros.scoring import GroundTruth, LabelError, person_of

GT_TOPIC = "/ground_truth/activities"


class BagEvalError(ValueError):
    """The bag or the request cannot be evaluated; the message says why and what is there."""


def bag_sha256(path: Path) -> str:
    """sha256 over the bag's files (a directory: its files in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        hash_file(h, f)
    return h.hexdigest()


def _ground_truth(labels: Path | None, names: list[str]) -> GroundTruth:
    if labels is None:
        return GroundTruth(list(names))
    try:
        return GroundTruth.from_sidecar(labels, names)
    except LabelError as e:
        raise BagEvalError(str(e)) from None


def _prepare(reader, bag: Path, labels: Path | None, names: list[str], points_topic: str, counts: dict,
             wearers: list[str] | None) -> tuple[GroundTruth, list[str]]:
    """What both modes need before the scans: the topics checked, the ground truth (the label
    file, or the bag's label topic read in a first pass: a scan is written before its label
    message, and ground-truth segmentation needs the people listed at each scan), and the wearers
    (given, else every <wearer> of a /<wearer>/imu/<site> topic)."""
    _check_topics(reader, points_topic, labels is None, bag)
    gt = _ground_truth(labels, names)
    _check_overlap(gt, reader, bag)
    topics = {c.topic for c in reader.connections}
    if GT_TOPIC in topics:
        for _, _, msg in iter_messages(reader, {GT_TOPIC}, counts):
            gt.add_message(msg)
    if wearers is None:
        wearers = sorted({t.split("/")[1] for t in topics if "/imu/" in t})
    return gt, wearers


def _imu_topics(pattern: str, wearers: list[str], sites) -> dict[str, tuple[str, str]]:
    """Imu topic -> (wearer, site) for the bundle's IMU sites."""
    return {pattern.format(wearer=w, site=site): (w, site) for w in wearers for site in sites}


def _check_overlap(gt: GroundTruth, reader, bag: Path) -> None:
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


@dataclass
class _Connection:
    id: int
    topic: str
    msgtype: str
    msgcount: int


class McapStream:
    """An MCAP file read record by record (the `mcap` package), for files rosbags cannot open
    because their end is missing (a recording cut off): everything before the cut is used and
    :attr:`truncated` says where it stopped. The same interface as the part of rosbags' AnyReader
    that bag-eval uses."""

    def __init__(self, path: Path) -> None:
        from mcap.records import Channel, Message, Schema

        self.path = path
        self.truncated: str | None = None
        schemas, channels, counts = {}, {}, {}
        self.start_time, self.end_time = None, None
        for r in self._records():
            if isinstance(r, Schema):
                schemas[r.id] = r.name
            elif isinstance(r, Channel):
                channels[r.id] = (r.topic, r.schema_id)
            elif isinstance(r, Message):
                counts[r.channel_id] = counts.get(r.channel_id, 0) + 1
                self.start_time = r.log_time if self.start_time is None else min(self.start_time, r.log_time)
                self.end_time = r.log_time if self.end_time is None else max(self.end_time, r.log_time)
        if self.start_time is None:
            raise BagEvalError(f"{path}: cannot read the bag: no message could be read ({self.truncated or 'empty'})")
        self.connections = [_Connection(cid, topic, schemas.get(sid, "unknown"), counts.get(cid, 0))
                            for cid, (topic, sid) in channels.items()]

    def _records(self):
        from mcap.stream_reader import StreamReader

        with self.path.open("rb") as f:
            try:
                yield from StreamReader(f).records
            except Exception as e:  # the cut: EndOfFile or a damaged last record
                self.truncated = f"{type(e).__name__} after the last complete record"

    def messages(self, connections=None):
        from mcap.records import Message

        wanted = {c.id: c for c in (connections if connections is not None else self.connections)}
        for r in self._records():
            if isinstance(r, Message) and r.channel_id in wanted:
                yield wanted[r.channel_id], r.log_time, r.data

    def deserialize(self, raw, msgtype: str):
        from despite_core.data.rosbag import typestore

        return typestore().deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        pass


def open_bag(path: Path):
    """A rosbags AnyReader over the bag (MCAP or sqlite3) with despite_ros's types; an MCAP file
    whose end was cut off is read record by record up to the cut (:class:`McapStream`)."""
    from rosbags.highlevel import AnyReader

    from despite_core.data.rosbag import typestore

    if not path.exists():
        raise BagEvalError(f"{path}: bag not found")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
        return reader
    except Exception as e:  # rosbags raises several reader errors for broken bags
        first = f"{type(e).__name__}: {e}"
    files = sorted(path.glob("*.mcap")) if path.is_dir() else [path] if path.suffix == ".mcap" else []
    if len(files) == 1:
        try:
            return McapStream(files[0])
        except BagEvalError:
            raise
        except Exception as e:  # not even a readable start
            first += f"; record by record: {type(e).__name__}: {e}"
    raise BagEvalError(f"{path}: cannot read the bag ({first})")


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


def evaluate_offline(bag: Path, model: Path, *, segmentation: str = "live", labels: Path | None = None,
                     points_topic: str = "/lidar/points", imu_topic: str = "/{wearer}/imu/{site}",
                     wearers: list[str] | None = None, stride: int = 3, progress: bool = True) -> dict:
    """Run the pipeline over the bag in-process; returns the results dict (see :func:`write_results`)."""
    from tqdm import tqdm

    from despite_core.data.pointcloud2 import PointCloud2Error, decode_fields
    from despite_ros.buffers import imu_values_of
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
        gt, wearers = _prepare(reader, bag, labels, names, points_topic, counts, wearers)
        pipe = HarPipeline(rt, stride=stride)
        topics = {c.topic for c in reader.connections}
        imu_topics = {}
        matcher = None
        if wearers and rt.has("imu_encoder"):
            matcher = WearerMatcher(rt, wearers)
            imu_topics = _imu_topics(imu_topic, wearers, matcher.layout.sites)
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
    from despite_ros.pipeline import ScanOutput

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
    _report_png(result, records, latencies, out / "report.png")
    return result


def _report_png(result: dict, records: list, latencies: list, png: Path) -> None:
    """The report's content on one image (for a README or a ticket): figures, confusion, timeline."""
    import matplotlib.pyplot as plt

    names = result["class_names"]
    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.1])
    ax = fig.add_subplot(grid[0, 0])
    ax.axis("off")
    m = result["matching_accuracy"].get("overall")
    lat = result.get("latency_ms")
    fmt = lambda v, spec=".3f": "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [f"mode: {result['mode']}, segmentation: {result['segmentation']}",
             f"model: {result['model_id']}",
             f"accuracy: {fmt(result['accuracy'])}",
             f"macro-F1: {fmt(result['macro_f1'])}",
             f"windows: {result['windows']}  ambiguous: {result['ambiguous']}  unassociated: {result['unassociated']}",
             f"wearer matching: {fmt(m, '.2f')}",
             f"latency p50/p95: {lat['p50']}/{lat['p95']} ms" if lat else "latency: offline run",
             f"scans: {result['scans']}, dropped periods: {result['dropped']}, invalid: {result['invalid']}"]
    ax.text(0, 1, "despite bag-eval\n\n" + "\n".join(lines), va="top", family="monospace", fontsize=9)
    if result["confusion"]:
        conf = np.asarray(result["confusion"], np.float64)
        norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
        ax = fig.add_subplot(grid[0, 1])
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title("confusion (rows: true)", fontsize=9)
    if latencies:
        ax = fig.add_subplot(grid[0, 2])
        ax.hist(latencies, bins=30)
        ax.set_xlabel("latency, ms", fontsize=8)
        ax.set_title("scan publication -> labels", fontsize=9)
    if records:
        ax = fig.add_subplot(grid[1, :])
        tracks = sorted({r["track"] for r in records})[:6]
        t0 = min(r["stamp"] for r in records)
        for i, tid in enumerate(tracks):
            rs = [r for r in records if r["track"] == tid]
            t = [(r["stamp"] - t0) / NS for r in rs]
            ax.plot(t, [r["true"] + 0.12 * i for r in rs], ".", ms=5, color=f"C{i}", label=f"track {tid} true")
            ax.plot(t, [(r["predicted"] if 0 <= r["predicted"] < len(names) else -1) + 0.12 * i for r in rs], "x",
                    ms=4, color=f"C{i}", alpha=0.6)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("s")
        ax.set_title("true (dots) vs predicted (crosses) per track", fontsize=9)
        ax.legend(fontsize=7, ncol=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def evaluate_replay(bag: Path, model: Path, *, rate: float = 1.0, labels: Path | None = None,
                    points_topic: str = "/lidar/points", imu_topic: str = "/{wearer}/imu/{site}",
                    wearers: list[str] | None = None, stride: int = 3, record: Path | None = None,
                    progress: bool = True, settle: float = 3.0) -> dict:
    """Publish the bag onto DDS with its timing (divided by ``rate``) for har_node and matching_node
    (started here with bringup), record what they publish, score it; latency from publication."""
    import os

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Imu, PointCloud2
    from tqdm import tqdm

    from despite_ros.bringup import Bringup, share_dir, use_shipped_dds_profile
    from despite_ros.inference import load_bundle
    from despite_ros.live_score import LiveScorer

    if rate <= 0:
        raise BagEvalError(f"--rate must be > 0, got {rate}")
    bundle = load_bundle(model)
    names = bundle.class_names
    reader = open_bag(bag)
    counts: dict = {"invalid": 0}
    try:
        gt, wearers = _prepare(reader, bag, labels, names, points_topic, counts, wearers)
        topics = {c.topic: c for c in reader.connections}
        imu_topics = [t for t in _imu_topics(imu_topic, wearers, bundle.imu_layout.sites) if t in topics]
        plan = [(conn.topic, t, raw) for conn, t, raw in
                reader.messages(connections=[topics[points_topic], *(topics[t] for t in imu_topics)])]
    finally:
        reader.close()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    pipeline = {"model": str(Path(model).resolve()), "stride": str(stride), "truth_field": "gt_person"}
    overrides = {"har_node": pipeline, "matching_node": {"model": pipeline["model"],
                                                         "imu_topic": imu_topic,
                                                         "wearers": "[" + ",".join(wearers) + "]"}}
    nodes = ("har_node", "matching_node") if wearers else ("har_node",)
    use_shipped_dds_profile()
    devnull = open(os.devnull, "w")
    b = Bringup(share_dir() / "config" / "har.yaml", nodes, overrides, stdout=devnull)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
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
            for topic, t, raw in plan:
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
        end = time.monotonic() + settle
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
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
    return {**summary,
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
            "records": scorer.board.records, "latencies": latencies}


def _record(path: Path, messages: list) -> None:
    """The nodes' outputs, as received, into a new MCAP bag (rosbags writer, raw CDR from rclpy)."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from despite_core.data.rosbag import typestore

    if path.exists():
        raise BagEvalError(f"{path}: exists; --record writes a new bag")
    store = typestore()
    types = {"/despite/activities": "despite_ros/msg/ActivityArray", "/despite/imu_activities": "despite_ros/msg/ActivityArray",
             "/despite/matches": "despite_ros/msg/MatchArray"}
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {t: w.add_connection(t, m, typestore=store) for t, m in types.items()}
        for topic, _, msg in messages:
            s = stamp_ns(msg.header.stamp)
            w.write(conns[topic], s, serialize_message(msg))
