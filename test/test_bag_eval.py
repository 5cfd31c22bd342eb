"""despite-ros bag-eval on small synthetic bags (15 s, 2 people, 16-beam LiDAR: full 64-beam scans
cost ~0.9 GB per minute): offline ground-truth segmentation equals `despite eval har --model` on
the same windows; sqlite3 and MCAP give the same result; replay at 1x agrees with offline; a
sidecar label file scores like the bag's topic; broken bags and missing topics are clear errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.bags import mcap_messages, to_sqlite3
from helpers.ros_env import ros_env

BIN = Path(sys.prefix) / "bin"


def bag_eval(args: list[str], tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "despite-ros"), "bag-eval", *args, "--quiet"], env=ros_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


REQUIRED = ("accuracy", "macro_f1", "windows", "ambiguous", "unassociated", "per_class", "confusion",
            "matching_accuracy", "latency_ms", "dropped", "invalid", "model_id", "bag_sha256",
            "coverage", "recall", "false_tracks_per_minute", "id_switches_per_person_minute")


def test_ground_truth_segmentation_equals_eval_har_and_sqlite3_equals_mcap(synth, tmp_path):
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "gt"), "--segmentation", "ground-truth"], tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "gt" / "results.json").read_text())
    assert all(k in res for k in REQUIRED)
    for f in ("confusion.png", "timeline.png", "report.html", "report.png", "windows.csv"):
        assert (tmp_path / "gt" / f).stat().st_size > 500, f
    ev = subprocess.run([str(BIN / "despite"), "eval", "har", "--store", str(synth / "store"), "--split", "train",
                         "--stride", "3", "--out", str(tmp_path / "ev"), "--quiet", "--model", str(_default_model())],
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    ref = json.loads((tmp_path / "ev" / "har.json").read_text())
    # Same windows (stride 3 from the first scan), same labels, same predictions: the same numbers
    # for the windows' own labels (the fused ones are the track's labels over time).
    assert res["windows"] == ref["windows"] > 50
    assert res["accuracy_raw"] == pytest.approx(ref["accuracy"]) and res["unassociated"] == 0
    assert res["fusion"] and res["true_segments"] > 5 and res["predicted_segments"] > 0
    assert 0 <= res["segment_f1"] <= 1 and res["event_delay_s_median"] > 0
    events = (tmp_path / "gt" / "events.csv").read_text().splitlines()
    assert len(events) > res["predicted_segments"]             # a start and an end per segment, and a header
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "raw"), "--segmentation", "ground-truth",
                    "--no-fusion"], tmp_path)
    assert out.returncode == 0, out.stderr
    raw = json.loads((tmp_path / "raw" / "results.json").read_text())
    assert raw["confusion"] == ref["confusion"] and raw["accuracy"] == pytest.approx(ref["accuracy"])
    assert raw["segment_f1"] is None and not raw["fusion"]
    # The same bag stored as sqlite3 gives the same result.
    sq = tmp_path / "bag_sqlite"
    to_sqlite3(synth / "bag", sq)
    out = bag_eval([str(sq), "--out", str(tmp_path / "gt_sqlite"), "--segmentation", "ground-truth"], tmp_path)
    assert out.returncode == 0, out.stderr
    res2 = json.loads((tmp_path / "gt_sqlite" / "results.json").read_text())
    assert res2["confusion"] == res["confusion"] and res2["bag_sha256"] != res["bag_sha256"]


def test_live_offline_replay_and_sidecar_labels(synth, tmp_path):
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "live")], tmp_path)
    assert out.returncode == 0, out.stderr
    live = json.loads((tmp_path / "live" / "results.json").read_text())
    assert live["windows"] + live["unassociated"] + live["ambiguous"] > 20 and live["latency_ms"] is None
    assert live["scans_per_second"] > 0          # reported; its size is the machine's (bench/, not a test)
    # Live against ground truth: the truth windows are exactly the windows ground-truth segmentation
    # scores on the same bag; coverage and recall are fractions of them, recall never above coverage.
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "gt"), "--segmentation", "ground-truth"], tmp_path)
    assert out.returncode == 0, out.stderr
    gt = json.loads((tmp_path / "gt" / "results.json").read_text())
    assert all(k in live for k in REQUIRED) and gt["coverage"] is None          # (not measured for ground truth)
    assert live["truth_windows"] == gt["windows"] > 20
    assert 0.5 < live["coverage"] <= 1 and 0 <= live["recall"] <= live["coverage"]
    correct = sum(r["outcome"] == "correct" for r in csv.DictReader((tmp_path / "live" / "windows.csv").open()))
    # (a person with two tracks at one stamp is one truth window: two correct rows, one recall hit)
    assert 0.9 * correct <= live["recall"] * live["truth_windows"] <= correct + 0.5
    assert live["false_tracks_per_minute"] >= 0 and live["id_switches_per_person_minute"] >= 0
    # Replay at 1x through the real nodes over DDS. Tolerance: sensor-data QoS is best effort and a
    # scan can be lost or delivered late under load, which shifts that track's windows (a filled
    # frame); so at least 80 % of the offline windows must come back with the same label.
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "replay"), "--mode", "replay",
                    "--record", str(tmp_path / "rec")], tmp_path, timeout=400)
    assert out.returncode == 0, out.stderr + out.stdout
    rep = json.loads((tmp_path / "replay" / "results.json").read_text())
    assert rep["latency_ms"]["p50"] > 0 and rep["latency_ms"]["p95"] >= rep["latency_ms"]["p50"]
    assert rep["truth_windows"] == live["truth_windows"] and 0 < rep["coverage"] <= 1
    key = lambda r: (round(float(r["stamp_s"]), 1), r["track"])  # noqa: E731
    a = {key(r): r["predicted"] for r in csv.DictReader((tmp_path / "live" / "windows.csv").open())}
    b = {key(r): r["predicted"] for r in csv.DictReader((tmp_path / "replay" / "windows.csv").open())}
    same = sum(a[k] == b.get(k) for k in a)
    assert a and same / len(a) >= 0.8, (same, len(a), len(b))
    # the recording is in rosbag2's layout and opens with the MCAP project's own reader and decoder
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["metadata.yaml", "rec_0.mcap"]
    decoded = mcap_messages(tmp_path / "rec" / "rec_0.mcap")
    assert len(decoded["/despite/events"]) >= rep["predicted_segments"] > 0
    assert {e.label for e in decoded["/despite/events"]} <= set(rep["class_names"])
    # har_node's events came back over DDS and were scored like offline's
    assert rep["fusion"] and rep["true_segments"] == live["true_segments"] > 5 and rep["predicted_segments"] > 0
    assert rep["segment_f1"] is not None and rep["event_delay_s_median"] > 0
    from despite_core.data.rosbag import open_bag

    reader = open_bag(tmp_path / "rec")
    try:
        recorded = {c.topic: c.msgcount for c in reader.connections}
    finally:
        reader.close()
    assert recorded["/despite/events"] >= rep["predicted_segments"] > 0
    # Sidecar labels (CSV segments per person) built from the store score like the bag's topic.
    from despite_core.data.store import Store

    store = Store(synth / "store")
    rows = []
    t0 = 1767225600.0                                  # the synthetic bag's epoch (2026-01-01)
    for sid in store.sequence_ids:
        seq = store.read(sid)
        for k, lab in enumerate(seq.labels):
            if lab >= 0:
                t = t0 + seq.timestamps[k]
                rows.append({"start": f"{t - 0.05:.3f}", "end": f"{t + 0.05:.3f}", "label": store.class_names[lab],
                             "person": f"person_{seq.person}"})
    side = tmp_path / "labels.csv"
    with side.open("w", newline="") as f:
        w = csv.DictWriter(f, ["start", "end", "label", "person"])
        w.writeheader()
        w.writerows(rows)
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "side"), "--labels", str(side)], tmp_path)
    assert out.returncode == 0, out.stderr
    side_res = json.loads((tmp_path / "side" / "results.json").read_text())
    assert side_res["confusion"] == live["confusion"]


def test_bad_arguments_fail_before_the_run(synth, tmp_path):
    """--out an existing file, an Imu pattern without {site}, wearers the bag does not have: named at
    once (these used to give a traceback after the whole run, or silently match nothing)."""
    (tmp_path / "afile").write_text("x")
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "afile")], tmp_path)
    assert out.returncode == 2 and "exists and is not a directory" in out.stderr and "Traceback" not in out.stderr
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "o1"), "--imu-topic", "/{wearer}/imu"], tmp_path)
    assert out.returncode == 2 and "needs {wearer} and {site}" in out.stderr
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "o2"), "--wearers", "ghost"], tmp_path)
    assert out.returncode == 2 and "for wearers ['ghost']" in out.stderr and "'person_1', 'person_2'" in out.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


class Replay:
    """A `bag-eval --mode replay` run in the background whose stderr (the replay's progress bar) is
    read as it comes, so a test acts at a known point of the replay, never after a guessed delay."""

    def __init__(self, args: list[str], tmp_path: Path):
        import threading

        self.proc = subprocess.Popen([str(BIN / "despite-ros"), "bag-eval", *args, "--mode", "replay"],
                                     env=ros_env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=lambda: self.chunks.extend(iter(lambda: self.proc.stderr.read1(4096), b"")),
                                       daemon=True)
        self.reader.start()

    def wait_sent(self, fraction: float, timeout: float = 120) -> None:
        """Until the progress bar shows ``fraction`` of the bag's messages published."""
        import re
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            sent = [int(n) / int(m) for n, m in re.findall(rb"replay:.*?\| *(\d+)/(\d+)", b"".join(self.chunks))]
            if sent and max(sent) >= fraction:
                return
            time.sleep(0.2)
        raise AssertionError(f"the replay did not reach {fraction:.0%} (bag-eval exit {self.proc.poll()}): "
                             + b"".join(self.chunks).decode(errors="replace")[-2000:])

    def finish(self, timeout: float = 120) -> str:
        """Waits for the exit (killing on timeout); bag-eval's stderr."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        return b"".join(self.chunks).decode(errors="replace")


def test_replay_fails_loudly_when_a_node_dies(synth, tmp_path):
    """A node exiting during the replay made every later window missing while the run ended with
    exit 0 and a score; now it is an error and no score is written."""
    import os
    import signal

    from helpers.procs import children

    run = Replay([str(synth / "bag"), "--out", str(tmp_path / "r"), "--rate", "0.5"], tmp_path)
    try:
        run.wait_sent(0.3)
        os.kill(children(run.proc.pid, "har_node")[0], signal.SIGKILL)
    finally:
        err = run.finish()
    assert run.proc.returncode == 2 and "har_node exited with code -9 during the replay" in err, err[-2000:]
    assert not (tmp_path / "r" / "results.json").exists()


def test_broken_bags_and_missing_topics_are_clear_errors(synth, tmp_path):
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "x"), "--points-topic", "/velodyne_points"], tmp_path)
    assert out.returncode == 2 and "['/velodyne_points'] not in the bag; topics present:" in out.stderr
    assert "/lidar/points (sensor_msgs/msg/PointCloud2)" in out.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text((synth / "bag" / "metadata.yaml").read_text())
    (broken / "bag_0.mcap").write_bytes(b"\x89MCAP0\r\n" + np.random.default_rng(0).bytes(4096))
    out = bag_eval([str(broken), "--out", str(tmp_path / "y")], tmp_path)
    assert out.returncode == 2 and "cannot read the bag" in out.stderr, out.stderr
    # A recording cut off (its MCAP end missing): everything before the cut is scored, and said so.
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "metadata.yaml").write_text((synth / "bag" / "metadata.yaml").read_text())
    data = (synth / "bag" / "bag_0.mcap").read_bytes()
    (cut / "bag_0.mcap").write_bytes(data[: int(len(data) * 0.7)])
    out = bag_eval([str(cut), "--out", str(tmp_path / "cut_out")], tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "cut_out" / "results.json").read_text())
    assert res["truncated"] and 0 < res["scans"] < 150 and res["windows"] > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("start,end,label\n1,2,flying\n")
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "z"), "--labels", str(bad)], tmp_path)
    assert out.returncode == 2 and "label 'flying' is not a class of the model" in out.stderr
    out = bag_eval([str(tmp_path / "nope"), "--out", str(tmp_path / "w")], tmp_path)
    assert out.returncode == 2 and "bag not found" in out.stderr


def _default_model() -> Path:
    from despite_core.runtime.inference import default_bundle_path

    return default_bundle_path()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_replay_still_scores_and_records(synth, tmp_path, signame):
    """Ctrl-C (SIGINT) or SIGTERM (kill, systemd, docker stop, a CI timeout) during a replay: what
    was replayed is scored (`interrupted` true), --record leaves a readable bag of what the nodes
    published until then, and the nodes bag-eval started are stopped. SIGTERM used to end bag-eval
    at once (exit -15): no results, no recording, and har_node and matching_node (in sessions of
    their own) left running as orphans. The signal comes once 40 % of the bag is sent: windows are
    out and 60 % is still to go."""
    import os
    import signal

    from helpers.procs import children

    run = Replay([str(synth / "bag"), "--out", str(tmp_path / "r"), "--rate", "0.5",
                  "--record", str(tmp_path / "rec.mcap")], tmp_path)
    nodes: list[int] = []
    try:
        run.wait_sent(0.4)
        nodes = children(run.proc.pid, "har_node") + children(run.proc.pid, "matching_node")
        assert len(nodes) == 2, nodes
        os.kill(run.proc.pid, getattr(signal, signame))
        err = run.finish()
        left = [pid for pid in nodes if _running(pid)]
    finally:
        run.finish()
        for pid in nodes:                          # never leave an orphan behind, whatever happened
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"nodes still running after bag-eval exited: {left}"
    proc = run.proc
    assert proc.returncode == 0, err[-2000:]
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["interrupted"] is True
    assert 0 < res["scans"] < 140, res["scans"]           # scored what was replayed: part of the 150 scans
    got = mcap_messages(tmp_path / "rec.mcap")
    assert got.get("/despite/activities"), list(got)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (exited, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


Y2038_NS = 2_145_916_800 * 10**9                       # 2038-01-01T00:00:00Z


def _with_extra_scan(src: Path, dst: Path, after: int, change) -> None:
    """``src`` rewritten with one more PointCloud2 right after scan ``after``: a copy of that scan
    changed by ``change`` (a rosbags message -> message)."""
    from helpers.bags import edit_cdr, rewrite_bag

    def edit(topic, t, raw, k):
        if topic != "/lidar/points" or k != after:
            return [(t, raw)]
        return [(t, raw), (t + 1, edit_cdr(raw, "sensor_msgs/msg/PointCloud2", change))]

    rewrite_bag(src, dst, edit)


def test_offline_a_malformed_cloud_or_a_2038_stamp_changes_no_window(synth, tmp_path):
    """Offline bag-eval of the bag with one extra scan: (a) whose x field has count 2 (offline
    bag-eval aborted on it): counted invalid, the run completes; (b) stamped in 2038 (billions of
    dropped periods, 5 windows instead of 24): held and dropped. Either way every window, every
    perception figure and the dropped periods equal those of the bag without it."""
    import dataclasses

    from despite_ros.bag_eval import evaluate_offline

    model = _default_model()
    base = evaluate_offline(synth / "bag", model, progress=False)
    assert base["windows"] > 20 and base["invalid"] == 0

    def x_count_2(m):              # x of count 2 at 0-8 (not overlapping), y at 8, z at 12: as in the report
        f = {x.name: x for x in m.fields}
        return dataclasses.replace(m, fields=[dataclasses.replace(f["x"], count=2), dataclasses.replace(f["y"], offset=8),
                                              dataclasses.replace(f["z"], offset=12), f["gt_person"]])

    def in_2038(m):
        return dataclasses.replace(m, header=dataclasses.replace(
            m.header, stamp=dataclasses.replace(m.header.stamp, sec=Y2038_NS // 10**9, nanosec=0)))

    keys = ("windows", "accuracy", "ambiguous", "unassociated", "dropped", "coverage", "recall",
            "false_tracks_per_minute", "id_switches_per_person_minute", "truth_windows", "segment_f1")
    for name, change, counted in (("x_count_2", x_count_2, "invalid"), ("y2038", in_2038, None)):
        _with_extra_scan(synth / "bag", tmp_path / name, 60, change)
        res = evaluate_offline(tmp_path / name, model, progress=False)
        assert res["scans"] == base["scans"] + 1, name
        assert res["invalid"] == base["invalid"] + (counted == "invalid"), (name, res["invalid"])
        assert res["records"] == base["records"], name                  # every window, label and outcome
        assert {k: res.get(k) for k in keys} == {k: base.get(k) for k in keys}, name
        assert not res["interrupted"] and not res["truncated"]


def test_corrupt_chunks_are_reported_in_both_modes_without_a_gt_person_field(synth, tmp_path):
    """A bag with one bit-flipped chunk, clouds without gt_person and sidecar labels: the corrupt
    chunk is on the console summary and in report.html (it was only in results.json), and the
    replay's preparation counts it too (it stopped reading at the first cloud without gt_person and
    reported 0)."""
    import dataclasses

    from helpers.bags import edit_cdr, flip_bit_in_chunk, mcap_chunks, rewrite_bag

    from despite_core.runtime.inference import load_bundle
    from despite_ros.bag_eval.replay import load_replay

    def edit(topic, t, raw, k):
        if topic != "/lidar/points":
            return [(t, raw)]
        return [(t, edit_cdr(raw, "sensor_msgs/msg/PointCloud2",
                             lambda m: dataclasses.replace(m, fields=[f for f in m.fields if f.name != "gt_person"])))]

    bag = tmp_path / "nogt"
    rewrite_bag(synth / "bag", bag, edit, topics={"/lidar/points"})
    assert len(mcap_chunks(bag / "nogt_0.mcap")) >= 3
    flip_bit_in_chunk(bag / "nogt_0.mcap")
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,label\n1767225600.0,1767225615.0,walk\n")      # the bag's 15 s
    out = bag_eval([str(bag), "--out", str(tmp_path / "o"), "--labels", str(labels)], tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["corrupt_chunks"] == 1 and res["coverage"] is None
    assert "corrupt chunks: 1" in out.stdout, out.stdout
    assert "<th>corrupt_chunks</th><td>1</td>" in (tmp_path / "o" / "report.html").read_text()
    gt, wearers, imu_topics, tw, plan, counts = load_replay(bag, load_bundle(_default_model()), labels,
                                                            "/lidar/points", "/{wearer}/imu/{site}", None, 3)
    assert tw is None and plan and counts["corrupt_chunks"] == 1, counts
    # and a clean bag prints nothing about chunks
    out = bag_eval([str(synth / "bag"), "--out", str(tmp_path / "clean"), "--segmentation", "ground-truth",
                    "--no-fusion"], tmp_path)
    assert out.returncode == 0 and "corrupt chunks" not in out.stdout
    assert "corrupt_chunks" not in (tmp_path / "clean" / "report.html").read_text()
