"""ROS 2 bags (rosbag2: MCAP or sqlite3) to a sequence store: your own LiDAR and IMU recordings.

``despite import rosbag BAG [BAG ...] --out STORE``

Reads the bags with rosbags (no ROS install needed), selects scans on the model's frame grid
exactly as ``har_node`` does (``runtime.buffers.FrameSelector``), and cuts one sequence per person:

- ``--segmentation live`` (default): the live perception and tracking that the nodes run
  (``runtime.perception.Perception`` with the shipped defaults); one sequence per track.
- ``--segmentation field:NAME``: a per-point integer id field on the clouds (``gt_person`` in
  ``despite synth`` bags; 0 = no person); one sequence per id.

Labels come from a label file (``--labels``, bag-eval's sidecar format: start, end, label,
optional person; stamps in seconds since the epoch) or from the bag's ground-truth topic
(``/ground_truth/activities``, ``despite_ros/ActivityArray``, by label name). IMU messages
(``sensor_msgs/Imu`` on ``--imu-topic``) go through the runtime's own conversion
(``runtime.buffers.imu_values_of`` / ``to_layout``) and are resampled at the scan stamps; a
wearer's IMU is attached to the sequence of the person it belongs to (wearer ``person_<k>`` is
person k of the id field; ``--single-person``: the one wearer belongs to every track).

Every sequence records its bag, points topic, segmentation, track or person, wearer and the
absolute time range (``start``, ``end``, ``t0``: seconds since the epoch; the sequence's own
timestamps count from ``t0``, the bag's first selected scan) in ``attrs``. Splits (``--split``):
``bag`` puts the last bags given into ``test`` (``--test-fraction`` of them), ``time`` the last
``--test-fraction`` of every bag's time (sequences are cut there); written as the split scheme
``by_bag`` / ``by_time``. docs/importers.md has the worked example.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from despite_core.data.imu_layout import ImuLayout
from despite_core.data.importers.common import (
    ImporterError, WarningLog, add_output_arguments, progress, store_summary, wrap_store_error,
)
from despite_core.data.resample import resample_imu
from despite_core.data.rosbag import (
    DEFAULT_IMU_TOPIC, DEFAULT_POINTS_TOPIC, GT_TOPIC, BagError, imu_pattern, iter_messages, open_bag,
    topic_listing, wearers_in,
)
from despite_core.data.store import Sequence, StoreError, StoreWriter
from despite_core.runtime.buffers import NS, BufferConfig, FrameSelector, imu_values_of, stamp_ns, to_layout
from despite_core.runtime.scoring import GroundTruth, LabelError, person_of

STORE_CHANNELS = ("rotmat", "acc", "gyro")     # as despite synth writes: sensor frame, specific force
SPLITS = ("none", "bag", "time")


@dataclass
class _Track:
    """One person (field id) or track (live) of one run of a bag: scan index -> points."""
    key: str
    person: int                                   # 0 = unknown
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    truth: dict[int, int] = field(default_factory=dict)   # field id -> point count (live tracks)
    track_id: int | None = None


@dataclass
class _BagRead:
    name: str
    stamps: list[int]                              # selected scans, ns, of every run
    runs: list[int]                                # run index of each selected scan
    tracks: list[_Track]
    imu: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]   # (wearer, site) -> (stamps ns, (N, W))
    counts: dict[str, int]
    topic_labels: GroundTruth | None = None        # the ground-truth topic's labels, when read


def store_imu_layout(sites) -> ImuLayout:
    return ImuLayout(sites=tuple(sites), channels=STORE_CHANNELS, acc_frame="sensor", gravity="specific_force",
                     world="z_up_arbitrary_heading")


def _base_bundle(path: Path | None):
    from despite_core.runtime.inference import BundleError, default_bundle_path, load_bundle

    try:
        return load_bundle(path if path is not None else default_bundle_path())
    except BundleError as e:
        raise ImporterError(f"--base-model: {e}") from None


def _label_names(paths: list[Path]) -> list[str]:
    """Class names from label files: every label, in order of first appearance."""
    from despite_core.runtime.scoring import _sidecar_rows

    names: list[str] = []
    for p in paths:
        try:
            rows = _sidecar_rows(p)
        except LabelError as e:
            raise ImporterError(str(e)) from None
        for r in rows:
            if isinstance(r, dict) and isinstance(r.get("label"), str) and r["label"].strip() not in names:
                names.append(r["label"].strip())
    if not names:
        raise ImporterError(f"{[str(p) for p in paths]}: no labels in the label file(s) to take class names from")
    return names


def _sidecar(paths: list[Path], names: list[str]) -> GroundTruth:
    gt = GroundTruth(list(names))
    for p in paths:
        try:
            gt.segments += GroundTruth.from_sidecar(p, names).segments
        except LabelError as e:
            raise ImporterError(str(e)) from None
    return gt


def _topic_labels(reader, bag: Path, names: list[str], counts: dict) -> GroundTruth:
    """Per-person labels by stamp from the ground-truth ActivityArray topic, by label name."""
    gt = GroundTruth(list(names))
    for _, _, msg in iter_messages(reader, {GT_TOPIC}, counts):
        s = stamp_ns(msg.header.stamp)
        for p in msg.people:
            label = str(p.label)
            if label and label not in names:
                raise ImporterError(f"{bag}: {GT_TOPIC} labels person {p.track_id} {label!r}, not one of the class "
                                    f"names {names} (pass --class-names labels with a label file, or another "
                                    "--base-model)")
            cid = names.index(label) if label else (int(p.class_id) if int(p.class_id) < len(names) else -1)
            gt.by_stamp.setdefault(int(p.track_id), {})[s] = cid
    return gt


def read_bag(bag: Path, *, points_topic: str, imu_topic: str, wearers: list[str] | None, sites, fps: float,
             window: int, segmentation: str, background: bool, gt_topic_names: list[str] | None,
             log: WarningLog) -> _BagRead:
    """One bag's selected scans cut into tracks, and its IMU samples converted per (wearer, site);
    with ``gt_topic_names`` (the class names) the ground-truth topic's labels are read first."""
    from despite_core.data.pointcloud2 import PointCloud2Error, decode_points
    from despite_core.runtime.perception import Perception, PerceptionConfig

    try:
        reader = open_bag(bag)
    except BagError as e:
        raise ImporterError(str(e)) from None
    counts = {"scans": 0, "selected": 0, "invalid_scans": 0, "imu": 0, "invalid_imu": 0, "runs": 1}
    try:
        present = {c.topic: c.msgtype for c in reader.connections}
        if points_topic not in present:
            raise ImporterError(f"{bag}: --points-topic {points_topic} is not in the bag; topics present: "
                                f"{topic_listing(reader)}")
        if present[points_topic] != "sensor_msgs/msg/PointCloud2":
            raise ImporterError(f"{bag}: {points_topic} carries {present[points_topic]}, not sensor_msgs/msg/PointCloud2")
        topic_gt = None
        if gt_topic_names is not None:
            if GT_TOPIC not in present:
                raise ImporterError(f"{bag}: no labels: the bag has no {GT_TOPIC} topic and no --labels file was "
                                    f"given; topics present: {topic_listing(reader)}")
            topic_gt = _topic_labels(reader, bag, gt_topic_names, counts)
        try:
            found = wearers_in(reader, imu_topic)
        except BagError as e:
            raise ImporterError(str(e)) from None
        if wearers is not None:
            ghosts = [w for w in wearers if w not in found]
            if ghosts:
                raise ImporterError(f"{bag}: no Imu topic matching {imu_topic!r} for wearers {ghosts}; wearers with "
                                    f"such topics: {sorted(found) or 'none'}")
            use = list(wearers)
        else:
            use = sorted(found)
        imu_topics = {}
        for w in use:
            for site in sites:
                t = imu_topic.format(wearer=w, site=site)
                if t not in present:
                    raise ImporterError(f"{bag}: wearer {w} has no {t} (the IMU sites are {list(sites)}); "
                                        f"topics present: {topic_listing(reader)}")
                imu_topics[t] = (w, site)
        field_name = segmentation.split(":", 1)[1] if segmentation.startswith("field:") else None
        cfg = BufferConfig(fps=fps, window=window)
        selector = FrameSelector(cfg)
        perception = Perception(PerceptionConfig(background=background)) if field_name is None else None
        stamps: list[int] = []
        runs: list[int] = []
        tracks: dict[str, _Track] = {}
        samples: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {k: [] for k in imu_topics.values()}
        run = 0
        total = sum(c.msgcount for c in reader.connections if c.topic == points_topic)
        bar = progress(None, desc=f"import {bag.name}", total=total, unit="scan")
        for topic, _, msg in iter_messages(reader, {points_topic, *imu_topics}, counts):
            if topic in imu_topics:
                counts["imu"] += 1
                v = imu_values_of(msg)
                s = stamp_ns(msg.header.stamp)
                if v is None or s < 0:
                    counts["invalid_imu"] += 1
                    continue
                samples[imu_topics[topic]].append((s, v))
                continue
            bar.update(1)
            counts["scans"] += 1
            s = stamp_ns(msg.header.stamp)
            status = selector.offer(s)
            if status in ("backwards", "jump"):            # time restarted: a new run, tracks end here
                run += 1
                counts["runs"] += 1
                if perception is not None:
                    perception.reset()
            elif status != "selected":
                continue
            names_in = [str(f.name) for f in msg.fields]
            extra = field_name or ("gt_person" if "gt_person" in names_in else None)
            if field_name is not None and field_name not in names_in:
                raise ImporterError(f"{bag}: --segmentation field:{field_name}: the clouds on {points_topic} have no "
                                    f"{field_name!r} field (fields: {names_in})")
            try:
                xyz, cols = decode_points(msg, [extra] if extra and extra in names_in else [])
            except PointCloud2Error as e:
                counts["invalid_scans"] += 1
                log.warn(f"{bag}: a scan on {points_topic} cannot be decoded ({e}); skipped", kind="bad scan")
                continue
            i = len(stamps)
            stamps.append(s)
            runs.append(run)
            counts["selected"] += 1
            ids = cols.get(extra) if extra else None
            if field_name is not None:
                ids = np.asarray(ids).astype(np.int64)
                people = sorted(int(p) for p in np.unique(ids) if p > 0)
                if topic_gt is not None:                   # people listed by the label topic, occluded or not
                    people = sorted(set(people) | set(topic_gt.people_at(s)))
                for pid in people:
                    pts = xyz[ids == pid]
                    tr = tracks.setdefault(f"{run}:{pid}", _Track(f"person_{pid}", pid))
                    tr.frames[i] = pts[np.isfinite(pts).all(1)].astype(np.float32)
                continue
            res = perception.process(xyz, s / NS)
            for p in res.people:
                tr = tracks.setdefault(f"{run}:{p.track_id}", _Track(f"track_{p.track_id}", 0, track_id=p.track_id))
                tr.frames[i] = np.asarray(p.points, np.float32)
                if ids is not None:
                    u, n = np.unique(np.asarray(ids)[p.indices].astype(np.int64), return_counts=True)
                    for a, b in zip(u.tolist(), n.tolist()):
                        tr.truth[a] = tr.truth.get(a, 0) + b
        bar.close()
    finally:
        reader.close()
    if counts.get("truncated"):
        log.warn(f"{bag}: the bag ends early ({counts['truncated']}); imported what was read", kind="truncated")
    for tr in tracks.values():
        if tr.truth:                                   # a live track's person: its most frequent id (0: none)
            tr.person = max(tr.truth, key=lambda k: (tr.truth[k], -k))
    imu = {}
    for k, rows in samples.items():
        rows.sort(key=lambda r: r[0])
        t = np.array([r[0] for r in rows], np.int64)
        keep = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.zeros(0, bool)
        vals = (to_layout(np.stack([r[1] for r in rows])[keep], store_imu_layout((k[1],)))
                if len(t) else np.zeros((0, 15), np.float32))
        imu[k] = (t[keep], vals)
    return _BagRead(bag_label(bag), stamps, runs, [tracks[k] for k in sorted(tracks, key=_track_order)], imu, counts,
                    topic_gt)


def _track_order(key: str) -> tuple[int, int]:
    run, tid = key.split(":")
    return int(run), int(tid)


def bag_label(bag: Path) -> str:
    """A bag's name in sequence ids: its directory or file name without .mcap / .db3."""
    name = bag.name
    for suffix in (".mcap", ".db3"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "bag"


def _imu_for(read: _BagRead, wearer: str, sites, stamps: np.ndarray, max_stale: float) -> tuple[np.ndarray | None, str]:
    """(T, sites, 15) of ``wearer`` at ``stamps`` (ns), or None and why (a site not covering the span)."""
    out = np.empty((len(stamps), len(sites), store_imu_layout(sites).width), np.float32)
    base = int(stamps[0])
    for j, site in enumerate(sites):
        t, vals = read.imu[(wearer, site)]
        if len(t) < 2:
            return None, f"{wearer}/{site}: fewer than 2 valid samples"
        if (t[0] - stamps[0]) / NS > max_stale or (stamps[-1] - t[-1]) / NS > max_stale:
            return None, (f"{wearer}/{site}: samples cover {(t[0] - base) / NS:.2f}..{(t[-1] - base) / NS:.2f} s of the "
                          f"sequence's 0..{(stamps[-1] - base) / NS:.2f} s")
        gap = float(np.diff(t).max()) / NS
        if gap > 2 * max_stale:
            lo, hi = np.searchsorted(t, stamps[0]), np.searchsorted(t, stamps[-1])
            inner = float(np.diff(t[max(lo - 1, 0):hi + 1]).max(initial=0)) / NS
            if inner > 2 * max_stale:
                return None, f"{wearer}/{site}: {inner:.2f} s without samples inside the sequence"
        out[:, j] = resample_imu((t - base) / NS, vals[:, None, :], store_imu_layout((site,)), (stamps - base) / NS,
                                 max_extrapolation=max_stale)[:, 0]
    return out, ""


def sequences_of(read: _BagRead, bag: Path, *, gt: GroundTruth | None, wearers: list[str], sites, fps: float,
                 window: int, points_topic: str, segmentation: str, single_person: bool, split: str,
                 test_fraction: float, log: WarningLog) -> list[tuple[Sequence, str]]:
    """(sequence, split part) of every track of one bag; tracks shorter than a window are dropped
    (counted in ``read.counts['short']``)."""
    stamps = np.asarray(read.stamps, np.int64)
    runs = np.asarray(read.runs)
    read.counts.setdefault("short", 0)
    read.counts.setdefault("without_imu", 0)
    if not len(stamps):
        return []
    t0 = int(stamps[0])
    cut = None
    if split == "time":
        cut = int(stamps[0] + (1 - test_fraction) * (stamps[-1] - stamps[0]))
    owner = {person_of(w): w for w in wearers if person_of(w) > 0}
    out = []
    for tr in read.tracks:
        idx = sorted(tr.frames)
        lo, hi = idx[0], idx[-1]
        span = np.arange(lo, hi + 1)
        span = span[runs[span] == runs[lo]]
        parts = [("train", span)]
        if cut is not None:
            parts = [("train", span[stamps[span] < cut]), ("test", span[stamps[span] >= cut])]
        for part, sel in parts:
            if len(sel) < window:
                read.counts["short"] += 1
                continue
            st = stamps[sel]
            person = 1 if single_person else tr.person
            if gt is not None:
                labels = np.asarray(gt.labels(person, st), np.int64)
            else:
                labels = np.full(len(st), -1, np.int64)
            wearer = (wearers[0] if single_person and wearers else owner.get(person))
            imu = None
            if wearer is not None:
                imu, why = _imu_for(read, wearer, sites, st, BufferConfig().max_stale)
                if imu is None:
                    read.counts["without_imu"] += 1
                    log.warn(f"{bag}: {tr.key}: IMU of {wearer} not attached ({why})", kind="imu not attached")
            sid = f"{read.name}/{tr.key}" + (f"/run{runs[lo]}" if read.counts["runs"] > 1 else "") + (
                f"/{part}" if cut is not None else "")
            empty = np.zeros((0, 3), np.float32)
            seq = Sequence(
                sequence_id=sid, subject=f"{read.name}/{tr.key}" if person == 0 or single_person else f"{read.name}/person_{person}",
                fps=fps, timestamps=(st - t0) / NS, labels=labels.astype(np.int16),
                points=[tr.frames.get(int(i), empty) for i in sel], imu=imu, scene=read.name, person=int(person),
                attrs={"bag": str(bag), "topic": points_topic, "segmentation": segmentation,
                       "track": tr.track_id, "wearer": wearer, "t0": t0 / NS, "start": int(st[0]) / NS,
                       "end": int(st[-1]) / NS, "observed_frames": int(sum(len(tr.frames.get(int(i), ())) > 0 for i in sel)),
                       "labelled_frames": int((labels >= 0).sum())})
            out.append((seq, part))
    return out


def import_rosbag(bags: list[Path], out: Path, *, points_topic: str = DEFAULT_POINTS_TOPIC,
                  imu_topic: str = DEFAULT_IMU_TOPIC, wearers: list[str] | None = None,
                  labels: list[Path] | None = None, segmentation: str = "live", base_model: Path | None = None,
                  class_names: str = "base", single_person: bool = False, background: bool = True,
                  split: str = "none", test_fraction: float = 0.25, allow_unlabelled: bool = False,
                  overwrite: bool = False) -> dict[str, Any]:
    """Import ``bags`` into a store at ``out``; returns the run summary (see the module doc)."""
    if not bags:
        raise ImporterError("give at least one bag")
    if segmentation != "live" and not (segmentation.startswith("field:") and len(segmentation) > 6):
        raise ImporterError(f"--segmentation must be live or field:NAME (e.g. field:gt_person), got {segmentation!r}")
    if split not in SPLITS:
        raise ImporterError(f"--split must be one of {list(SPLITS)}, got {split!r}")
    if not 0 < test_fraction < 1:
        raise ImporterError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if split == "bag" and len(bags) < 2:
        raise ImporterError("--split bag needs at least two bags (the last ones given become the test set)")
    if class_names not in ("base", "labels"):
        raise ImporterError(f"--class-names must be base or labels, got {class_names!r}")
    if class_names == "labels" and not labels:
        raise ImporterError("--class-names labels takes the class names from --labels files; none given")
    try:
        imu_pattern(imu_topic)
    except BagError as e:
        raise ImporterError(str(e)) from None
    if single_person and wearers is not None and len(wearers) > 1:
        raise ImporterError(f"--single-person: the one person wears one IMU set; --wearers lists {wearers}")
    labels = [Path(p) for p in labels or []]
    for p in labels:
        if not p.is_file():
            raise ImporterError(f"--labels {p}: no such file")
    bundle = _base_bundle(base_model)
    names = bundle.class_names if class_names == "base" else _label_names(labels)
    sites = tuple(bundle.imu_layout.sites)
    fps, window = float(bundle.meta["fps"]), int(bundle.meta["window"])
    log = WarningLog()
    sidecar = _sidecar(labels, names) if labels else None
    seen: dict[str, int] = {}
    per_bag, parts, totals = [], {"train": [], "test": []}, {}
    layout = store_imu_layout(sites)
    n_test_bags = max(1, math.ceil(test_fraction * len(bags))) if split == "bag" else 0
    with StoreWriter(out, names, imu_layout=layout, source="rosbag", overwrite=overwrite,
                     description=f"ROS 2 bags imported with --segmentation {segmentation}; points in the sensor "
                                 f"frame of {points_topic}") as writer:
        for b, bag in enumerate(bags):
            bag = Path(bag)
            read = read_bag(bag, points_topic=points_topic, imu_topic=imu_topic, wearers=wearers, sites=sites,
                            fps=fps, window=window, segmentation=segmentation, background=background,
                            gt_topic_names=names if sidecar is None and not allow_unlabelled else None, log=log)
            gt = sidecar if sidecar is not None else read.topic_labels
            if gt is not None and gt.by_stamp and segmentation == "live" and not single_person and all(
                    tr.person == 0 for tr in read.tracks):
                raise ImporterError(f"{bag}: {GT_TOPIC} labels people by id, but live tracks carry no person id "
                                    "(the clouds have no gt_person field): use --segmentation field:NAME, "
                                    "--single-person, or a --labels file")
            if gt is not None and not single_person and all(tr.person == 0 for tr in read.tracks) and any(
                    who is not None for *_, who in gt.segments):
                raise ImporterError(f"{bag}: the label file names people, but live tracks carry no person id (the "
                                    "clouds have no gt_person field): drop the person column, or use --single-person "
                                    "or --segmentation field:NAME")
            if read.name in seen:                      # two bags of one name: ids stay unique
                seen[read.name] += 1
                read.name = f"{read.name}_{seen[read.name]}"
            else:
                seen[read.name] = 0
            use = (list(wearers) if wearers is not None
                   else sorted({w for (w, _) in read.imu}))
            if single_person and len(use) > 1:
                raise ImporterError(f"{bag}: --single-person but the bag has IMU of wearers {use}; pick one with --wearers")
            if use and not single_person and all(tr.person == 0 for tr in read.tracks):
                log.warn(f"{bag}: IMU of {use} not attached: live tracks carry no person id (no gt_person field); "
                         "with one person in the recording pass --single-person", kind="imu no person")
            seqs = sequences_of(read, bag, gt=gt, wearers=use, sites=sites, fps=fps, window=window,
                                points_topic=points_topic, segmentation=segmentation, single_person=single_person,
                                split=split, test_fraction=test_fraction, log=log)
            in_test = split == "bag" and b >= len(bags) - n_test_bags
            labelled = 0
            for seq, part in seqs:
                try:
                    writer.add(seq)
                except StoreError as e:
                    raise wrap_store_error(bag, e) from None
                parts["test" if in_test else part].append(seq.sequence_id)
                labelled += int((seq.labels >= 0).sum())
            if read.counts["selected"] == 0:
                raise ImporterError(f"{bag}: no scan on {points_topic} could be used ({read.counts['scans']} read, "
                                    f"{read.counts['invalid_scans']} undecodable)")
            per_bag.append({"bag": str(bag), "name": read.name, "sequences": len(seqs), "labelled_frames": labelled,
                            **{k: v for k, v in read.counts.items() if not isinstance(v, str)}})
            for k, v in read.counts.items():
                if isinstance(v, int):
                    totals[k] = totals.get(k, 0) + v
        if not any(parts.values()):
            raise ImporterError(f"no sequence of at least {window} frames was found in {[str(b) for b in bags]} "
                                f"({totals.get('selected', 0)} scans selected, {totals.get('short', 0)} tracks "
                                "shorter than a window): check --points-topic and --segmentation")
        if sidecar is None and not allow_unlabelled and not any(r["labelled_frames"] for r in per_bag):
            raise ImporterError("no frame got a label: the ground-truth topic's people ids match no sequence "
                                "(with --segmentation live the clouds need a gt_person field)")
        if split != "none":
            writer.add_split(f"by_{split}", parts)
    return store_summary(Path(out), {"format": "rosbag", "segmentation": segmentation, "bags": per_bag,
                                     "labels": "label file" if sidecar is not None else (
                                         "none" if allow_unlabelled else GT_TOPIC),
                                     "totals": totals, "warnings": log.finish()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``despite import rosbag``."""
    parser.epilog = ("example: despite import rosbag rec1 rec2 rec3 --labels labels.csv --points-topic /ouster/points "
                     "--split bag --out runs/mine   (docs/importers.md)")
    parser.add_argument("bags", nargs="+", type=Path, metavar="BAG",
                        help="rosbag2 directories (metadata.yaml + .mcap or .db3) or single .mcap files")
    parser.add_argument("--points-topic", default=DEFAULT_POINTS_TOPIC,
                        help="sensor_msgs/PointCloud2 topic (default %(default)s)")
    parser.add_argument("--imu-topic", default=DEFAULT_IMU_TOPIC,
                        help="sensor_msgs/Imu topic pattern with {wearer} and {site} (default %(default)s); the sites "
                             "are the base model's")
    parser.add_argument("--wearers", default=None,
                        help="comma-separated wearers to import (default: every wearer with topics matching --imu-topic)")
    parser.add_argument("--labels", type=Path, action="append", default=None, metavar="FILE",
                        help="label file (repeat for several): CSV with a header or JSON list, rows start, end (message "
                             "stamps, seconds since the epoch), label, optional person; default: the bag's "
                             + GT_TOPIC + " topic")
    parser.add_argument("--segmentation", default="live",
                        help="live (the nodes' perception and tracking: one sequence per track) or field:NAME (a "
                             "per-point person id field such as gt_person: one sequence per id); default %(default)s")
    parser.add_argument("--single-person", action="store_true",
                        help="the recording holds one person: every live track is that person, labels without a "
                             "person column apply to it and the single wearer's IMU is attached")
    parser.add_argument("--no-background", dest="background", action="store_false",
                        help="live segmentation without the background model (a moving sensor)")
    parser.add_argument("--base-model", type=Path, default=None, metavar="DIR",
                        help="bundle whose class names, IMU sites, frame rate and window the store follows "
                             "(default: the shipped default bundle)")
    parser.add_argument("--class-names", default="base", choices=("base", "labels"),
                        help="base: the base model's classes (fine-tune its head); labels: the labels of --labels "
                             "files, in order of first appearance (a new head)")
    parser.add_argument("--split", default="none", choices=SPLITS,
                        help="none; bag: the last --test-fraction of the bags given are the test set; time: the last "
                             "--test-fraction of every bag's time (split scheme by_bag / by_time)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of bags or time for test (default 0.25)")
    parser.add_argument("--allow-unlabelled", action="store_true",
                        help="import without labels (every frame -1: pre-training data)")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``despite import rosbag`` from parsed flags; returns the JSON summary."""
    wearers = [w.strip() for w in args.wearers.split(",") if w.strip()] if args.wearers else None
    return import_rosbag(list(args.bags), args.out, points_topic=args.points_topic, imu_topic=args.imu_topic,
                         wearers=wearers, labels=args.labels, segmentation=args.segmentation,
                         base_model=args.base_model, class_names=args.class_names, single_person=args.single_person,
                         background=args.background, split=args.split, test_fraction=args.test_fraction,
                         allow_unlabelled=args.allow_unlabelled, overwrite=args.overwrite)
