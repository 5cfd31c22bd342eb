"""Regression tests of the hostile-input campaign (issue "Reliability"): each test reproduces one
reported defect and fails on the code before its fix. Library level here; the same inputs against
running nodes over DDS are in test_nodes_e2e.py."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from despite_core.data.pointcloud2 import MAX_FIELDS, PointCloud2Error, decode_points, encode
from despite_core.runtime.buffers import NS, BufferConfig, FrameSelector, WearerImu
from despite_core.runtime.inference import default_bundle_path, load_bundle


def message(fields, point_step, data, width):
    return SimpleNamespace(height=1, width=width, fields=fields, is_bigendian=False, point_step=point_step,
                           row_step=point_step * width, data=np.frombuffer(bytes(data), np.uint8), is_dense=False)


def field(name, offset, datatype=7, count=1):
    return SimpleNamespace(name=name, offset=offset, datatype=datatype, count=count)


def test_coordinates_with_count_above_one_are_invalid_not_a_crash():
    """Defect 1: x with count 2 raised a ValueError from stacking columns (har_node exited); x, y, z
    with count 3 gave a mis-shaped scan."""
    n = 10
    two = message([field("x", 0, count=2), field("y", 8), field("z", 12)], 16, bytes(16 * n), n)
    with pytest.raises(PointCloud2Error, match="count 1"):
        decode_points(two)
    three = message([field("x", 0, count=3), field("y", 12, count=3), field("z", 24, count=3)], 36, bytes(36 * n), n)
    with pytest.raises(PointCloud2Error, match="count 1"):
        decode_points(three)
    fields, step, data = encode({"x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32),
                                 "z": np.zeros(n, np.float32), "gt_person": np.zeros((n, 2), np.int32)})
    with pytest.raises(PointCloud2Error, match="count 1"):
        decode_points(message(fields, step, data, n), ["gt_person"])
    xyz, cols = decode_points(message(*encode({"x": np.ones(n, np.float32), "y": np.zeros(n, np.float32),
                                                "z": np.zeros(n, np.float32)})[::1], n), [])
    assert xyz.shape == (n, 3) and xyz.dtype == np.float32 and cols == {}


def test_a_cloud_with_thousands_of_fields_is_refused_at_once():
    """Defect 2: a 1-point cloud with 60,000 one-byte fields stalled har_node ~15 s (a duplicate-name
    check quadratic in the number of fields)."""
    many = [field(f"f{i}", i, datatype=2) for i in range(60_000)]
    with pytest.raises(PointCloud2Error, match=f"at most {MAX_FIELDS}"):
        decode_points(message(many, 60_000, bytes(60_000), 1))
    ok = [field("x", 0), field("y", 4), field("z", 8)] + [field(f"f{i}", 12 + i, datatype=2) for i in range(MAX_FIELDS - 3)]
    xyz, _ = decode_points(message(ok, 12 + MAX_FIELDS - 3, bytes(12 + MAX_FIELDS - 3), 1))
    assert xyz.shape == (1, 3)
    dup = [field("x", 0), field("y", 4), field("z", 8), field("x", 12)]
    with pytest.raises(PointCloud2Error, match="duplicate field name 'x'"):
        decode_points(message(dup, 16, bytes(16), 1))


LAYOUT = load_bundle(default_bundle_path()).imu_layout


def rest(k):
    return np.array([1.0, 0, 0, 0, 0, 0, 0, 0, 0, 9.81])


def test_late_imu_samples_are_put_in_order_not_a_reset():
    """Defect 3: every 10th sample 35 ms late cleared that site's history each time: no window, no
    wearer matched, diagnostics "no data" while 100 Hz flowed."""
    imu = WearerImu(LAYOUT, BufferConfig())
    stamps = [int(k * 0.01 * NS) for k in range(400)]             # 4 s at 100 Hz
    # arrival order: every 10th sample is delivered 35 ms late (after the next 3-4 samples)
    arrivals = sorted([(k + (3.5 if k % 10 == 9 else 0.0), s) for k, s in enumerate(stamps)])
    statuses = [imu.push(site, s, rest(0)) for _, s in arrivals for site in LAYOUT.sites]
    assert "backwards" not in statuses and statuses.count("late") == 39 * len(LAYOUT.sites)   # the last one has no successor
    for site in LAYOUT.sites:
        t = [x[0] for x in imu.samples[site]]
        assert t == sorted(t) and len(t) == len(set(t))
    win, why = imu.window(np.array([int((1.5 + 0.1 * k) * NS) for k in range(24)], np.int64))
    assert win is not None, why
    # a sample far older than the newest is still time going back: the history restarts
    assert imu.push(LAYOUT.sites[0], int(0.5 * NS), rest(0)) == "backwards"


def test_imu_history_is_bounded_by_count_whatever_the_stamps():
    """Defect 5: stamps advancing 1 us per sample kept every sample (the horizon is stamp time)."""
    cfg = BufferConfig()
    imu = WearerImu(LAYOUT, cfg)
    site = LAYOUT.sites[0]
    for k in range(20_000):                                        # 20 ms of stamps: all inside the horizon
        imu.push(site, 10**9 + k * 1000, rest(k))
    assert len(imu.samples[site]) == cfg.imu_max_samples
    assert imu.push(site, -5, rest(0)) == "invalid"


def test_a_scan_stamped_far_away_is_held_then_dropped_or_confirmed():
    """Defect 4: one scan stamped in 2038 made missing_periods jump to billions and reset the
    windows (5 windows instead of 24); a negative stamp reset them too."""
    sel = FrameSelector(BufferConfig())
    period = 10**8
    out = [sel.offer(10**9 + k * period) for k in range(5)]
    assert out == ["selected"] * 5
    assert sel.offer(2_145_916_800 * NS) == "held"                # 2038
    assert sel.offer(10**9 + 5 * period) == "selected"            # the stream goes on: an outlier
    assert sel.offer(-3 * NS) == "bad_stamp"
    assert sel.offer(10**9 + 6 * period) == "selected"
    assert sel.offer(100 * NS) == "held"                          # a real jump: confirmed by the next scan
    assert sel.offer(100 * NS + period) == "jump"
    assert sel.offer(100 * NS + 2 * period) == "selected"


def test_pipeline_windows_survive_an_outlier_stamp():
    from despite_core.runtime.inference import Runtime
    from despite_core.runtime.pipeline import HarPipeline
    from despite_ros.bench import sim_scans

    rt = Runtime(default_bundle_path(), providers="cpu")
    scans = [np.stack([s["x"], s["y"], s["z"]], 1) for s in sim_scans(6.0, 1, 10.0, beams=32, columns=512)]

    def run(outliers: dict[int, int]):
        pipe = HarPipeline(rt, stride=3, fusion=None)
        windows = 0
        for k, xyz in enumerate(scans):
            if k in outliers:
                pipe.process_scan(xyz, outliers[k])
            windows += len(pipe.process_scan(xyz, 10**9 + k * 10**8).results)
        return windows, pipe

    clean, _ = run({})
    dirty, pipe = run({30: 2_145_916_800 * NS, 40: -NS})
    assert dirty == clean > 0
    assert pipe.buffers.missing_total == 0 and pipe.counts["held"] == 1 and pipe.counts["bad_stamp"] == 1


def test_diagnostic_levels_follow_the_last_period():
    """Defect 10: a node's level never returned to OK after one bad message."""
    from despite_ros.nodes.common import SinceLast

    since = SinceLast()
    assert since({"invalid": 1, "errors": 0}) == {"invalid": 1, "errors": 0}
    assert since({"invalid": 1, "errors": 0}) == {"invalid": 0, "errors": 0}
    assert since({"invalid": 3, "errors": 1}) == {"invalid": 2, "errors": 1}


def test_har_node_counts_malformed_coordinates_and_returns_to_ok(ros):
    """Defects 1 and 10 in the node: a cloud with x of count 2 is counted invalid (it made har_node
    exit), the level warns for that period and is OK again once scans are good."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2, PointField

    from despite_core.data.pointcloud2 import fill_message
    from despite_ros.bench import sim_scans
    from despite_ros.nodes.har_node import HarNode, to_time

    node = HarNode(context=ros, parameter_overrides=[Parameter("model", value=str(default_bundle_path())),
                                                     Parameter("providers", value="cpu")])
    diags = []
    node.diag_pub.publish = diags.append
    try:
        bad = PointCloud2()
        bad.header.stamp = to_time(10**9)
        bad.height, bad.width, bad.point_step, bad.row_step = 1, 4, 16, 64
        bad.fields = [PointField(name="x", offset=0, datatype=7, count=2), PointField(name="y", offset=8, datatype=7, count=1),
                      PointField(name="z", offset=12, datatype=7, count=1)]
        bad.data = bytes(64)
        node.on_points(bad)                                  # raised ValueError before: the node exited
        node.publish_diagnostics()
        st = diags[-1].status[0]
        assert st.level == st.WARN and "invalid" in st.message
        for k, s in enumerate(sim_scans(1.0, 1, 10.0, beams=16, columns=256)):
            m = PointCloud2()
            fill_message(m, s, frame_id="lidar", field_factory=PointField)
            m.header.stamp = to_time(2 * 10**9 + k * 10**8)
            node.on_points(m)
        node.publish_diagnostics()
        st = diags[-1].status[0]
        values = {kv.key: kv.value for kv in st.values}
        assert st.level == st.OK and st.message == "ok" and values["invalid"] == "1"   # total kept, level recovered
    finally:
        node.destroy_node()


def test_matching_node_takes_late_imu_and_reports_data(ros):
    """Defect 3 in the node: with every 10th sample 35 ms late, samples are counted as received
    (and late), not "no IMU data"."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Imu

    from despite_ros.nodes.har_node import to_time
    from despite_ros.nodes.matching_node import MatchingNode

    node = MatchingNode(context=ros, parameter_overrides=[Parameter("model", value=str(default_bundle_path())),
                                                          Parameter("providers", value="cpu")])
    diags = []
    node.diag_pub.publish = diags.append
    try:
        stamps = [int(k * 0.01 * NS) for k in range(300)]
        for _, s in sorted((k + (3.5 if k % 10 == 9 else 0.0), s) for k, s in enumerate(stamps)):
            for site in node.matcher.layout.sites:
                m = Imu()
                m.header.stamp = to_time(s)
                m.orientation.w, m.linear_acceleration.z = 1.0, 9.81
                node.on_imu("person_1", site, m)
        node.publish_diagnostics()
        st = diags[-1].status[0]
        values = {kv.key: kv.value for kv in st.values}
        assert values["backwards"] == "0" and int(values["late"]) == 29 * len(node.matcher.layout.sites)
        assert int(values["imu"]) == 300 * len(node.matcher.layout.sites)
        assert "no IMU data" not in st.message
    finally:
        node.destroy_node()


def test_perception_tracker_holds_at_most_max_tracks():
    """Every per-track store is bounded by count (issue: "every buffer bounded by count as well as
    time"): perception's tracker took a track for every person-like cluster, however many; now a new
    track beyond MAX_TRACKS is refused (the tracks held keep their people) and the lost tracks kept
    for re-identification are capped too, the oldest loss forgotten first; both counted."""
    from despite_core.runtime.buffers import MAX_TRACKS
    from despite_core.runtime.perception import PerceptionConfig, Tracker

    assert MAX_TRACKS == 64
    tr = Tracker(PerceptionConfig(min_hits=1, max_missed=0))
    crowd = lambda x0: np.array([[x0 + 3.0 * k, 0.0] for k in range(100)])      # noqa: E731 - 3 m apart
    ids, _ = tr.update(0.0, crowd(0.0))
    assert len(tr.tracks) == MAX_TRACKS and tr.refused == 100 - MAX_TRACKS
    assert ids[:MAX_TRACKS] == list(range(1, MAX_TRACKS + 1)) and ids[MAX_TRACKS:] == [None] * (100 - MAX_TRACKS)
    ids, _ = tr.update(0.1, crowd(0.0))                                   # the same 64 continue
    assert ids[:MAX_TRACKS] == list(range(1, MAX_TRACKS + 1)) and tr.refused == 2 * (100 - MAX_TRACKS)
    _, lost = tr.update(0.2, np.zeros((0, 2)))                            # all gone: 64 wait for re-id
    assert len(lost) == MAX_TRACKS and len(tr.lost) == MAX_TRACKS and tr.lost_evicted == 0
    tr.update(0.3, crowd(1000.0))                                         # a new crowd far away
    tr.update(0.4, np.zeros((0, 2)))
    assert len(tr.lost) == MAX_TRACKS and tr.lost_evicted == MAX_TRACKS
    assert min(t.tid for t in tr.lost) > MAX_TRACKS                       # the newest losses are kept


def test_track_windows_encoder_caches_and_fusion_hold_at_most_max_tracks():
    """TrackBuffers, the streaming encoder's tube cache and the fusion filters each hold at most
    MAX_TRACKS tracks (they took one per id, however many ids a scan or a ground-truth field
    brought); the stalest goes first, or a new track is refused when every one held is current."""
    from despite_core.runtime.buffers import MAX_TRACKS, TrackBuffers
    from despite_core.runtime.fusion import ActivityFusion
    from despite_core.runtime.inference import StreamingPointEncoder, TrackWindow

    buf = TrackBuffers(BufferConfig())
    frame = (np.zeros((4, 3), np.float32), np.zeros(3, np.float32), None)
    buf.push(10**9, {tid: frame for tid in range(100)})
    assert sorted(buf.tracks) == list(range(MAX_TRACKS)) and buf.refused == 100 - MAX_TRACKS and buf.evicted == 0
    dropped = buf.push(10**9 + 10**8, {tid: frame for tid in range(1000, 1010)})    # 10 new, the 64 unseen
    assert sorted(dropped) == list(range(10)) and buf.evicted == 10                  # stalest, lowest ids first
    assert len(buf.tracks) == MAX_TRACKS and set(range(1000, 1010)) <= set(buf.tracks)

    class FakeRuntime:                                 # what the encoder asks of a Runtime, no ONNX
        bundle = SimpleNamespace(root="fake", meta={"window": 24, "provenance": {"config": {"pointcloud": {
            "temporal_kernel": 3, "temporal_stride": 2, "temporal_padding": [1, 0]}}}},
            parts={"pointcloud_window": {"inputs": [{"shape": [1, 12]}]}})

        def has(self, part):
            return True

        def tube(self, prev, cur, nxt):
            return np.zeros((len(cur), 2, 3), np.float32), np.zeros((len(cur), 2, 5), np.float32)

        def window_from_tubes(self, a, t):
            return np.zeros((len(a), 8), np.float32), np.zeros((len(a), 4), np.float32)

    enc = StreamingPointEncoder(FakeRuntime())
    stamps = np.arange(24, dtype=np.int64) * 10**8 + 10**9
    for call in range(3):                              # 90 tracks within the idle limit
        enc.encode([TrackWindow(30 * call + k, stamps, np.zeros((24, 4, 3), np.float32)) for k in range(30)])
    assert len(enc._cache) == MAX_TRACKS and enc.evicted == 90 - MAX_TRACKS
    assert set(range(30, 90)) <= set(enc._cache)       # the least recently encoded went

    fusion = ActivityFusion(["a", "b"])
    scores = np.array([0.9, 0.1])
    win = lambda t: np.arange(24, dtype=np.int64) * 10**8 + t - 23 * 10**8     # noqa: E731 - ends at t
    fusion.update(3 * NS, [(tid, win(3 * NS), scores) for tid in range(MAX_TRACKS)])
    _, events = fusion.update(3 * NS + 10**8, [(tid, win(3 * NS + 10**8), scores) for tid in range(500, 510)])
    assert len(fusion.tracks) == MAX_TRACKS and fusion.evicted == 10
    assert sorted(e.track_id for e in events if not e.ongoing) == list(range(10))   # their segments ended


def test_har_node_counts_tracks_over_the_cap_in_diagnostics(ros):
    """har_node's /diagnostics give the tracks refused or evicted by store (HarPipeline.cap_counts),
    with a WARN for the period; here the tracker's cap is lowered to 1 and the scene has 2 people."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2, PointField

    from despite_core.data.pointcloud2 import fill_message
    from despite_ros.bench import sim_scans
    from despite_ros.nodes.har_node import HarNode, to_time

    node = HarNode(context=ros, parameter_overrides=[Parameter("model", value=str(default_bundle_path())),
                                                     Parameter("providers", value="cpu")])
    diags = []
    node.diag_pub.publish = diags.append
    try:
        node.publish_diagnostics()
        values = {kv.key: kv.value for kv in diags[-1].status[0].values}
        keys = ("tracks_refused", "lost_tracks_evicted", "track_windows_evicted", "track_windows_refused",
                "tube_caches_evicted", "fusion_tracks_evicted")
        assert {k: values.get(k) for k in keys} == dict.fromkeys(keys, "0")
        node.pipeline.perception.tracker.MAX_TRACKS = 1
        for k, s in enumerate(sim_scans(2.0, 2, 10.0, beams=16, columns=256)):
            m = PointCloud2()
            fill_message(m, s, frame_id="lidar", field_factory=PointField)
            m.header.stamp = to_time(10**9 + k * 10**8)
            node.on_points(m)
        node.publish_diagnostics()
        st = diags[-1].status[0]
        values = {kv.key: kv.value for kv in st.values}
        assert int(values["tracks_refused"]) > 0 and values["tracks"] == "1", values
        assert st.level == st.WARN and "tracks refused or evicted" in st.message, st.message
    finally:
        node.destroy_node()


def test_imu_rate_bench_reports_received_against_sent(tmp_path):
    """`despite-ros bench imu-rate` (the README's highest sustained IMU rate): matching_node offered
    rising rates, each step reports offered, sent and received (matching_node's own count) messages
    per second. Structure only, no speed: two short low steps, one wearer."""
    import json
    import subprocess
    import sys

    from helpers.ros_env import ros_env

    # `python -m despite_ros.cli` is `despite-ros` under any install prefix (venv or colcon)
    out = subprocess.run([sys.executable, "-m", "despite_ros.cli", "bench", "imu-rate", "--imu-hz", "20,40",
                          "--seconds", "2", "--wearers", "1", "--out", str(tmp_path / "r.json")],
                         env=ros_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["topics"] == 4 and [s["hz_per_topic"] for s in r["steps"]] == [20, 40]
    for s in r["steps"]:
        assert s["offered_msgs_per_s"] == 4 * s["hz_per_topic"] and s["sent_msgs_per_s"] > 0
        assert 0 < s["received_msgs_per_s"] and 0 < s["received_fraction"] <= 1, s
    assert r["exit_codes"] == {"matching_node": r["exit_codes"]["matching_node"]}
    assert "received / sent" in out.stdout and "highest rate received in full" in out.stdout
