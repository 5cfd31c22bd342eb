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


def test_an_interrupted_replay_still_scores_and_records(synth, tmp_path):
    """Ctrl-C during a replay: what was replayed is scored (`interrupted` true) and --record leaves a
    readable bag of what the nodes published until then. The signal comes once 40 % of the bag is
    sent: windows are out and 60 % is still to go."""
    import os
    import signal

    run = Replay([str(synth / "bag"), "--out", str(tmp_path / "r"), "--rate", "0.5",
                  "--record", str(tmp_path / "rec.mcap")], tmp_path)
    try:
        run.wait_sent(0.4)
        os.kill(run.proc.pid, signal.SIGINT)
    finally:
        err = run.finish()
    proc = run.proc
    assert proc.returncode == 0, err[-2000:]
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["interrupted"] is True
    assert 0 < res["scans"] < 140, res["scans"]           # scored what was replayed: part of the 150 scans
    got = mcap_messages(tmp_path / "rec.mcap")
    assert got.get("/despite/activities"), list(got)
