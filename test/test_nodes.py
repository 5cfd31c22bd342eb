"""In-process tests of har_node and matching_node (tier b): the nodes are built with parameter
overrides and fed hand-built and simulated messages through their callbacks; published messages
are captured at the publishers. Uses the committed default bundle (models/default)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Imu, PointCloud2, PointField
from std_msgs.msg import Header

from despite_core.data.pointcloud2 import fill_message
from despite_core.data.synth.bag import scan_arrays
from despite_core.data.synth.world import WorldConfig, build_scene, iter_timeline
from despite_core.runtime.inference import default_bundle_path
from despite_ros.nodes.har_node import HarNode, stamp_ns, to_time
from despite_ros.nodes.matching_node import MatchingNode

BUNDLE = str(default_bundle_path())


def capture(pub) -> list:
    got = []
    pub.publish = got.append
    return got


def cloud(arrays: dict, t_ns: int, frame: str = "lidar") -> PointCloud2:
    msg = PointCloud2()
    fill_message(msg, arrays, frame_id=frame, field_factory=PointField)
    msg.header.stamp = to_time(t_ns)
    return msg


def sim_messages(seconds: float, seed: int = 5):
    cfg = WorldConfig(minutes=seconds / 60, people=2, seed=seed, scene_minutes=seconds / 60)
    scene = build_scene(cfg, 0, seconds)
    for t, kind, payload in iter_timeline(scene, full=True):
        yield t, kind, payload


def test_har_node_labels_tracks_from_simulated_scans_and_counts_hostile_input(ros):
    node = HarNode(context=ros, parameter_overrides=[Parameter("model", value=BUNDLE), Parameter("stride", value=2),
                                                     Parameter("truth_field", value="gt_person"),
                                                     Parameter("providers", value="cpu")])
    try:
        acts, embs, markers, truth = (capture(p) for p in (node.act_pub, node.emb_pub, node.marker_pub, node.truth_pub))
        diags, events = capture(node.diag_pub), capture(node.event_pub)
        for t, kind, scan in sim_messages(8.0):
            if kind == "scan":
                node.on_points(cloud(scan_arrays(scan), int(round(t * 1e9))))
        assert acts, "no ActivityArray after 8 s of scans"
        names = node.runtime.bundle.class_names
        for a in acts:
            assert a.source == "lidar" and a.header.frame_id == "lidar" and a.model_id == node.model_id
            for p in a.people:
                # the fused label and its posterior; the scores are the window's own
                assert p.label == names[p.class_id] and len(p.scores) == len(names) and 0 < p.confidence <= 1
                assert math.isclose(sum(p.scores), 1.0, abs_tol=1e-4)
                assert p.window_duration == pytest.approx(2.4)
                assert stamp_ns(a.header.stamp) - stamp_ns(p.window_start) == pytest.approx(2.3e9, abs=2e8)
        assert {e.track_id for e in embs} == {p.track_id for a in acts for p in a.people}
        e = embs[-1]
        assert len(e.frame_stamps) == 24 and len(e.data) == 512 and abs(np.linalg.norm(e.data) - 1) < 1e-3
        assert stamp_ns(e.frame_stamps[-1]) == stamp_ns(e.header.stamp)
        assert len(markers) == len(acts) and markers[-1].markers[0].type == markers[-1].markers[0].TEXT_VIEW_FACING
        assert markers[-1].markers[0].text.split(": ")[1].rsplit(" ", 1)[0] == acts[-1].people[0].label
        # events: every track's segments start (ongoing) before they end, with the fused labels
        assert events and {e.track_id for e in events} <= {p.track_id for a in acts for p in a.people}
        first = {}
        for e in events:
            assert e.label == names[e.class_id] and e.header.frame_id == "lidar"
            if e.ongoing:
                assert stamp_ns(e.end) == 0
                first.setdefault(e.track_id, e)
            else:
                assert e.track_id in first and stamp_ns(e.end) > stamp_ns(e.start)
        fused = {(stamp_ns(a.header.stamp), p.track_id): p.label for a in acts for p in a.people}
        for e in events:
            if e.ongoing:      # the event's window reported the label that started
                assert fused[(stamp_ns(e.header.stamp), e.track_id)] == e.label
        assert {p.wearer_id for t_ in truth for p in t_.people} <= {"person_1", "person_2", ""}
        assert any(p.wearer_id for t_ in truth for p in t_.people)
        # Hostile input: a cloud whose data is shorter than width x point_step, an empty cloud, an
        # all-NaN cloud and a stamp going backwards. The node keeps running and counts them.
        bad = cloud({"x": np.zeros(10, np.float32), "y": np.zeros(10, np.float32), "z": np.zeros(10, np.float32)}, 10**10)
        bad.data = bad.data[:50]
        node.on_points(bad)
        node.on_points(cloud({k: np.zeros(0, np.float32) for k in "xyz"}, 11 * 10**9))
        node.on_points(cloud({k: np.full(100, np.nan, np.float32) for k in "xyz"}, 12 * 10**9))
        node.on_points(cloud({k: np.zeros(5, np.float32) for k in "xyz"}, 10**9))
        node.publish_diagnostics()
        values = {kv.key: kv.value for kv in diags[-1].status[0].values}
        assert values["invalid"] == "1" and values["backwards"] == "1" and values["provider"] == "CPUExecutionProvider"
        assert diags[-1].status[0].level == diags[-1].status[0].WARN
    finally:
        node.destroy_node()


def test_live_scorer_dates_an_alert_when_it_was_raised():
    """Replay and the demo score har_node from its topics: an alert raised during an ongoing fall
    segment arrives on /despite/alerts only, as that segment's start announced again; it counts as
    one alert at the time it was raised, and the segment's own start keeps the time it was known."""
    from despite_core.runtime.buffers import NS
    from despite_core.runtime.scoring import GroundTruth, predicted_segments
    from despite_ros.live_score import LiveScorer
    from despite_ros.msg import ActivityEvent as EventMsg

    class NoNode:
        def create_subscription(self, *args):
            return None

    def msg(label, start_s, stamp_s, ongoing=True, end_s=0.0):
        return EventMsg(header=Header(stamp=to_time(int(stamp_s * NS))), track_id=7, label=label, class_id=15,
                        confidence=0.8, start=to_time(int(start_s * NS)), end=to_time(int(end_s * NS)), ongoing=ongoing)

    scorer = LiveScorer(NoNode(), GroundTruth(["stand", "fall"]), subscribe_gt=False)
    scorer.on_event(msg("fall", 4.0, 4.3))                  # the fall segment starts (known at 4.3 s)
    scorer.on_alert(msg("fall", 4.0, 5.5))                  # its alert, raised at 5.5 s
    scorer.on_alert(msg("fall", 4.0, 5.8))                  # a duplicate delivery: not another alert
    scorer.on_event(msg("fall", 4.0, 6.1, ongoing=False, end_s=6.0))
    scorer.on_alert(msg("fall", 4.0, 6.1, ongoing=False, end_s=6.0))    # the active alert's segment ends
    events = scorer.closed_events()
    alerts = [e for e in events if e.ongoing and e.alert]
    assert [(a.stamp_ns, a.repeat) for a in alerts] == [(int(5.5 * NS), True)]
    segs = predicted_segments(events, [])
    assert [(s.start, s.end, s.emitted) for s in segs] == [(int(4.0 * NS), int(6.0 * NS), int(4.3 * NS))]
    assert [e.alert for e in scorer.new_events] == [False, True, False]          # the demo prints the alert


def test_har_node_alerts_on_its_sequence_and_turns_off_fusion(ros):
    """Glue: the pipeline's fall alert (the default sequence, fall then lying, with the body going
    down) goes out on ~/output/alerts, the events once each on ~/output/events (the alert's repeat
    of the fall segment's start is for the alerts topic only), and /diagnostics is WARN naming the
    track while it lasts; the alert parameters reach the fusion; fusion off gives the windows' own labels."""
    from despite_core.runtime.buffers import NS

    node = HarNode(context=ros, parameter_overrides=[Parameter("model", value=BUNDLE), Parameter("providers", value="cpu"),
                                                     Parameter("alert_down_s", value=0.9),
                                                     Parameter("alert_min_length_m", value=0.7)])
    try:
        events, alerts, diags = capture(node.event_pub), capture(node.alert_pub), capture(node.diag_pub)
        names = node.runtime.bundle.class_names
        fusion = node.pipeline.fusion
        assert fusion.alerts_enabled and fusion.checks_body and fusion.cfg.alert_down_s == 0.9
        assert fusion.cfg.alert_min_length_m == 0.7
        node.received = 1
        for i, label in enumerate(["stand"] * 6 + ["fall"] * 8 + ["lying"] * 6):
            scores = np.full(len(names), 0.2 / (len(names) - 1))
            scores[names.index(label)] = 0.8
            stamps = (np.arange(24) * NS // 10 + i * 3 * NS // 10).astype(np.int64)
            down = stamps >= (23 + 6 * 3) * NS // 10      # from the newest frame of the first fall window on
            centroids = np.stack([np.full(24, 4.0), np.zeros(24), np.where(down, 0.15, 1.0)], 1)
            extents = np.stack([np.where(down, 0.3, 1.7), np.where(down, 1.6, 0.5)], 1)   # lying along the floor
            _, ev = fusion.update(int(stamps[-1]), [(7, stamps, scores, centroids, extents)])
            node.publish_events("lidar", ev)
        assert [(e.label, e.ongoing) for e in alerts if e.ongoing] == [("fall", True)] and alerts[0].track_id == 7
        assert [e.label for e in events if e.ongoing] == ["stand", "fall", "lying"]     # no repeated start
        node.publish_diagnostics()
        st = diags[-1].status[0]
        assert st.level == st.WARN and "ALERT" in st.message and "track 7" in st.message
        assert {kv.key: kv.value for kv in st.values}["active_alerts"] == "7"
        node.publish_events("lidar", fusion.end(7))          # the track is gone: the alert ends
        node.received = 1                                    # (no scans here: not the "no input" warning)
        node.publish_diagnostics()
        assert diags[-1].status[0].level == diags[-1].status[0].OK
        assert (alerts[-1].label, alerts[-1].ongoing) == ("lying", False)
    finally:
        node.destroy_node()
    node = HarNode(context=ros, parameter_overrides=[Parameter("model", value=BUNDLE), Parameter("fusion", value=False)])
    try:
        assert node.pipeline.fusion is None
    finally:
        node.destroy_node()


def test_har_node_rejects_bad_parameters(ros):
    with pytest.raises(ValueError, match="label_source must be one of"):
        HarNode(context=ros, parameter_overrides=[Parameter("model", value=BUNDLE), Parameter("label_source", value="x")])
    with pytest.raises(rclpy.exceptions.ParameterException):
        HarNode(context=ros, parameter_overrides=[Parameter("model", value=BUNDLE), Parameter("stride", value=0)])
    from despite_core.runtime.inference import BundleError

    with pytest.raises(BundleError, match="model bundle metadata not found"):
        HarNode(context=ros, parameter_overrides=[Parameter("model", value="/nonexistent")])


def test_matching_node_assigns_wearers_to_tracks(ros):
    har = HarNode(context=ros, parameter_overrides=[Parameter("model", value=BUNDLE), Parameter("stride", value=3),
                                                    Parameter("truth_field", value="gt_person"),
                                                    Parameter("providers", value="cpu")])
    match = MatchingNode(context=ros, parameter_overrides=[Parameter("model", value=BUNDLE),
                                                           Parameter("flush_delay", value=0.0),
                                                           Parameter("providers", value="cpu")])
    try:
        # IMU topics: best effort like a sensor, but half a second at 100 Hz queued per site, so a busy
        # moment of the node does not cut a gap into the history (the sensor-data profile keeps 5)
        imu_subs = [s_ for s_ in match.subscriptions if s_.msg_type is Imu]
        assert imu_subs and all(s_.qos_profile.depth >= 50 and s_.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                                for s_ in imu_subs), [s_.qos_profile for s_ in imu_subs]
        embs, truth = capture(har.emb_pub), capture(har.truth_pub)
        embs_kept = []
        matches, imu_acts = capture(match.match_pub), capture(match.imu_act_pub)
        sites = match.matcher.layout.sites
        # Seed 5. Measured right / assigned over 12 s: seeds 5, 7, 8: 56/61, 46/46, 46/48; seed 6: 22/43,
        # where the model's IMU embedding of the second person matches no track (model quality, the
        # model issue); the glue itself is tested exactly on hand-made embeddings (test_matching.py).
        for t, kind, payload in sim_messages(12.0, seed=5):
            ns = int(round(t * 1e9))
            if kind == "scan":
                har.on_points(cloud(scan_arrays(payload), ns))
                for e in embs:
                    match.on_embedding(e)
                embs_kept.extend(embs)
                embs.clear()
                match.flush()
            else:
                person, k = payload
                q = __import__("despite_core.data.rotations", fromlist=["matrix_to_quat"]).matrix_to_quat(
                    person.imu.orientation[k])
                for s, site in enumerate(person.imu.sites):
                    if site not in sites:
                        continue
                    m = Imu()
                    m.header.stamp = to_time(ns)
                    m.orientation.w, m.orientation.x, m.orientation.y, m.orientation.z = (float(v) for v in q[s])
                    a, g = person.imu.acc[k, s], person.imu.gyro[k, s]
                    m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = (float(v) for v in a)
                    m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(v) for v in g)
                    match.on_imu(f"person_{person.pid}", site, m)
        assert matches, "no MatchArray"
        true_person = {(stamp_ns(t_.header.stamp), p.track_id): p.wearer_id for t_ in truth for p in t_.people}
        right = total = 0
        for m in matches:
            assert len(m.similarity) == len(m.wearer_ids) * len(m.track_ids)
            assert all(-1.001 <= s <= 1.001 for s in m.similarity)
            for a in m.assignments:
                if a.assigned:
                    total += 1
                    right += true_person.get((stamp_ns(m.header.stamp), a.track_id)) == a.wearer_id
        # Two wearers, two tracks: a coin is right half the time. Demand far better than a coin: at
        # least 20 assignments, 75 % right (measured ~0.9), and under 1 % chance of a coin doing as well.
        from math import comb

        p_coin = sum(comb(total, k) for k in range(right, total + 1)) / 2 ** total if total else 1.0
        assert total >= 20 and right / total >= 0.75 and p_coin < 0.01, (right, total, p_coin)
        if match.matcher.has_head:
            assert imu_acts and imu_acts[-1].source == "imu" and {p.wearer_id for p in imu_acts[-1].people} <= {"person_1", "person_2"}
        # An embedding of another size (another model) is counted, not matched; the node keeps running.
        wrong = embs_kept[-1]
        wrong.data = wrong.data[:256]
        match.on_embedding(wrong)
        match.flush()
        assert match.counts["bad_embeddings"] == 1 and match.counts["errors"] == 0
        # A NaN IMU reading is counted, not used.
        bad = Imu()
        bad.orientation.w = float("nan")
        match.on_imu("person_1", sites[0], bad)
        assert match.counts["invalid"] == 1
    finally:
        har.destroy_node()
        match.destroy_node()
