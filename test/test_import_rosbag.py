"""`despite import rosbag`: a synthetic scene's bag imported in both segmentation modes gives back
the store `despite synth` wrote for the same scene (labels, points, IMU); sqlite3 equals MCAP; a
label file labels like the bag's topic; splits; bad inputs are clear errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.bags import to_sqlite3

BIN = Path(sys.executable).parent
EPOCH = 1767225600.0                       # despite synth's bag epoch (2026-01-01)


def _import(bags, out, **kw):
    from despite_core.data.importers.ros2bag import import_rosbag

    return import_rosbag([Path(b) for b in bags], Path(out), **kw)


def _sorted(p: np.ndarray) -> np.ndarray:
    return p[np.lexsort(p.T[::-1])] if len(p) else p


def test_field_segmentation_gives_back_the_synth_store(synth, tmp_path):
    from despite_core.data.store import Store
    from despite_core.runtime.inference import default_bundle_path, load_bundle

    summary = _import([synth / "bag"], tmp_path / "s", segmentation="field:gt_person")
    truth, got = Store(synth / "store"), Store(tmp_path / "s")
    assert summary["sequences"] == 2 and summary["labels"] == "/ground_truth/activities"
    # the store takes the base bundle's classes (--class-names base): the bag's (an edition-1 world) come first
    assert list(got.class_names) == load_bundle(default_bundle_path()).class_names
    assert list(got.class_names)[:len(truth.class_names)] == list(truth.class_names) and got.imu_layout == truth.imu_layout
    for a in truth:
        b = got.read(f"bag/person_{a.person}")
        assert b.person == a.person and b.num_frames == a.num_frames == 150
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_allclose(b.timestamps - b.timestamps[0], a.timestamps - a.timestamps[0], atol=1e-6)
        for pa, pb in zip(a.points, b.points):
            np.testing.assert_array_equal(_sorted(pb), _sorted(pa))
        # the bag's Imu messages through the runtime's conversion, resampled at the scans
        np.testing.assert_allclose(b.imu, a.imu, atol=1e-4)
        assert b.attrs["bag"] == str(synth / "bag") and b.attrs["topic"] == "/lidar/points"
        assert b.attrs["wearer"] == f"person_{a.person}"
        assert b.attrs["start"] == pytest.approx(EPOCH + a.timestamps[0], abs=1e-3)
        assert b.attrs["end"] == pytest.approx(EPOCH + a.timestamps[-1], abs=1e-3)
    # sqlite3 storage: the same store
    to_sqlite3(synth / "bag", tmp_path / "bag_sqlite")
    _import([tmp_path / "bag_sqlite"], tmp_path / "q", segmentation="field:gt_person")
    for a in got:
        b = Store(tmp_path / "q").read(a.sequence_id.replace("bag/", "bag_sqlite/"))
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_array_equal(b.imu, a.imu)
        assert all(np.array_equal(x, y) for x, y in zip(a.points, b.points))


def test_live_segmentation_cuts_the_people_the_nodes_would_track(synth, tmp_path):
    from despite_core.data.store import Store

    summary = _import([synth / "bag"], tmp_path / "s")
    truth, got = Store(synth / "store"), Store(tmp_path / "s")
    assert summary["sequences"] >= 2
    people = set()
    for b in got:
        assert b.sequence_id.startswith("bag/track_") and b.num_frames >= 24
        assert b.person in (1, 2), b.attrs                 # each track's majority gt_person
        people.add(b.person)
        a = truth.read(f"scene0000/person_{b.person}")
        # the synth store's frames at the track's scans (both count from the bag's first scan)
        k = np.searchsorted(a.timestamps, b.timestamps + a.timestamps[0] - 1e-3)
        np.testing.assert_allclose(a.timestamps[k] - a.timestamps[0], b.timestamps, atol=1e-3)
        # labels of the track's person at the track's scans
        assert (b.labels == a.labels[k]).mean() >= 0.95
        # the same wearer's IMU at the same scans
        np.testing.assert_allclose(b.imu, a.imu[k], atol=1e-4)
        # the track's points are (almost all) that person's points
        inside = []
        for pb, j in zip(b.points, k):
            if len(pb):
                pa = {tuple(r) for r in np.asarray(a.points[j]).round(5).tolist()}
                inside.append(np.mean([tuple(r) in pa for r in pb.round(5).tolist()]))
        assert np.mean(inside) > 0.9, np.mean(inside)
        assert b.attrs["segmentation"] == "live" and isinstance(b.attrs["track"], int)
    assert people == {1, 2}


def _sidecar(store_dir: Path, path: Path, with_person: bool = True) -> Path:
    """Label runs of the synth store as a label file (start, end in epoch seconds)."""
    from despite_core.data.store import Store

    store = Store(store_dir)
    rows = []
    for seq in store:
        t, lab = seq.timestamps + EPOCH, seq.labels
        start = 0
        for k in range(1, len(lab) + 1):
            if k == len(lab) or lab[k] != lab[start]:
                if lab[start] >= 0:
                    rows.append({"start": f"{t[start] - 0.05:.3f}", "end": f"{t[k - 1] + 0.05:.3f}",
                                 "label": store.class_names[lab[start]], "person": f"person_{seq.person}"})
                start = k
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["start", "end", "label"] + (["person"] if with_person else []),
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def test_a_label_file_labels_like_the_topic_and_splits(synth, tmp_path):
    from despite_core.data.store import Store

    side = _sidecar(synth / "store", tmp_path / "labels.csv")
    _import([synth / "bag"], tmp_path / "topic", segmentation="field:gt_person")
    _import([synth / "bag"], tmp_path / "side", segmentation="field:gt_person", labels=[side])
    a, b = Store(tmp_path / "topic"), Store(tmp_path / "side")
    for s in a:
        # without the topic, a person's sequence spans the scans where the id field has them (not
        # the first and last scans where they are fully occluded): compare on the common scans
        r = b.read(s.sequence_id)
        k = np.searchsorted(s.timestamps, r.timestamps)
        assert r.num_frames >= 140
        np.testing.assert_allclose(s.timestamps[k], r.timestamps)
        np.testing.assert_array_equal(r.labels, s.labels[k])
    # by time: the last quarter of the bag is the test part, each track cut there
    _import([synth / "bag"], tmp_path / "t", segmentation="field:gt_person", split="time", test_fraction=0.25)
    st = Store(tmp_path / "t")
    train, test = st.split("by_time", "train"), st.split("by_time", "test")
    assert sorted(train) == ["bag/person_1/train", "bag/person_2/train"]
    assert sorted(test) == ["bag/person_1/test", "bag/person_2/test"]
    assert max(st.read(s).attrs["end"] for s in train) < min(st.read(s).attrs["start"] for s in test)
    # by bag: the last bag given is the test set; two bags of one name keep distinct ids
    to_sqlite3(synth / "bag", tmp_path / "x" / "bag")
    _import([synth / "bag", tmp_path / "x" / "bag"], tmp_path / "b", segmentation="field:gt_person", split="bag")
    sb = Store(tmp_path / "b")
    assert sorted(sb.split("by_bag", "test")) == ["bag_1/person_1", "bag_1/person_2"]
    assert sorted(sb.split("by_bag", "train")) == ["bag/person_1", "bag/person_2"]
    # classes from the label file: only the labels it uses, in order of appearance
    _import([synth / "bag"], tmp_path / "l", segmentation="field:gt_person", labels=[side], class_names="labels")
    names = Store(tmp_path / "l").class_names
    rows = list(csv.DictReader(side.open()))
    assert list(names) == list(dict.fromkeys(r["label"] for r in rows))


def test_bad_inputs_are_clear_errors(synth, tmp_path):
    from despite_core.data.importers.common import ImporterError
    with pytest.raises(ImporterError, match=r"--points-topic /velodyne_points is not in the bag; topics present: .*"
                                            r"/lidar/points \(sensor_msgs/msg/PointCloud2\)"):
        _import([synth / "bag"], tmp_path / "a", points_topic="/velodyne_points")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"start,end,label\n{EPOCH},{EPOCH + 3},moonwalk\n")
    with pytest.raises(ImporterError, match=r"bad.csv: row 1: label 'moonwalk' is not a class of the model"):
        _import([synth / "bag"], tmp_path / "b", labels=[bad])
    with pytest.raises(ImporterError, match=r"no Imu topic matching .* for wearers \['ghost'\]"):
        _import([synth / "bag"], tmp_path / "c", wearers=["ghost"])
    with pytest.raises(ImporterError, match=r"have no 'nope' field"):
        _import([synth / "bag"], tmp_path / "d", segmentation="field:nope")
    with pytest.raises(ImporterError, match=r"--segmentation must be live or field:NAME"):
        _import([synth / "bag"], tmp_path / "e", segmentation="truth")
    with pytest.raises(ImporterError, match=r"the label file names people, but live tracks carry no person id"):
        _no_field = _copy_without_field(synth / "bag", tmp_path / "nofield.mcap", scans=60)
        _import([_no_field], tmp_path / "f", labels=[_sidecar(synth / "store", tmp_path / "l.csv")])
    # a bag too short for one window: nothing to import, said so
    short = _copy_without_field(synth / "bag", tmp_path / "short.mcap", scans=10, keep_field=True)
    with pytest.raises(ImporterError, match=r"no sequence of at least 24 frames"):
        _import([short], tmp_path / "g", segmentation="field:gt_person")
    # a bag without labels: named, with the topics present
    unlabelled = _copy_without_field(synth / "bag", tmp_path / "unlabelled.mcap", scans=30, keep_field=True,
                                     topics={"/lidar/points"})
    with pytest.raises(ImporterError, match=r"no labels: the bag has no /ground_truth/activities topic and no --labels "
                                            r"file was given; topics present: /lidar/points"):
        _import([unlabelled], tmp_path / "h")
    # ... unless asked for: every frame unlabelled (pre-training data)
    assert _import([unlabelled], tmp_path / "h", allow_unlabelled=True, segmentation="field:gt_person")["sequences"] == 2
    assert not (tmp_path / "a" / "meta.json").exists()


def _copy_without_field(src: Path, dst: Path, scans: int, keep_field: bool = False, topics=None) -> Path:
    """The first ``scans`` scans of a bag (with its IMU and labels), the gt_person field undeclared
    (the bytes stay, as a driver's padding would)."""
    import dataclasses

    from despite_core.data.rosbag import BagWriter, open_bag, typestore

    store = typestore()
    r = open_bag(src)
    w = BagWriter(dst)
    conns = {c.topic: w.add_connection(c.topic, c.msgtype) for c in r.connections if topics is None or c.topic in topics}
    n = 0
    for c, t, raw in r.messages():
        if c.topic not in conns:
            continue
        if c.topic == "/lidar/points":
            n += 1
            if n > scans:
                break
            if not keep_field:
                msg = r.deserialize(raw, c.msgtype)
                msg = dataclasses.replace(msg, fields=[f for f in msg.fields if f.name != "gt_person"])
                raw = store.serialize_cdr(msg, c.msgtype)
        w.write(conns[c.topic], t, raw)
    r.close()
    w.close()
    return dst


def test_the_cli_imports_and_explains(synth, tmp_path):
    out = subprocess.run([str(BIN / "despite"), "import", "rosbag", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--segmentation" in out.stdout and "field:NAME" in out.stdout
    side = _sidecar(synth / "store", tmp_path / "labels.csv")
    # --labels before the bag: the bag stays a bag (the flag takes one file; repeat it for more)
    out = subprocess.run([str(BIN / "despite"), "import", "rosbag", "--labels", str(side), str(synth / "bag"),
                          "--out", str(tmp_path / "s"), "--segmentation", "field:gt_person", "--split", "time"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["sequences"] == 4 and summary["splits"] == {"by_time": {"train": 2, "test": 2}}
    assert summary["labels"] == "label file" and summary["bags"][0]["bag"] == str(synth / "bag")
    out = subprocess.run([str(BIN / "despite"), "import", "rosbag", str(tmp_path / "missing"), "--out",
                          str(tmp_path / "m")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "bag not found" in out.stderr and "Traceback" not in out.stderr
