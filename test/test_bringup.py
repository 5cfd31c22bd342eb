"""`despite-ros bringup` with the launch arguments, over DDS: the nodes start where the arguments
say (points topic, namespace, wearers' IMU topics), run on /clock with --use-sim-time (windows by
message stamps, diagnostics on the node clock), and --respawn restarts a node that was killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.procs import children
from helpers.ros_env import ros_env

BIN = Path(sys.prefix) / "bin" / "despite-ros"
SIM_T0 = 5000 * 10**9           # sim time of the first /clock: far from the wall clock


def test_bringup_arguments_clock_and_respawn(tmp_path, monkeypatch):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2, PointField

    from despite_core.data.pointcloud2 import fill_message
    from despite_core.runtime.inference import default_bundle_path, load_bundle
    from despite_ros.bench import sim_scans
    from despite_ros.msg import ActivityArray
    from despite_ros.nodes.har_node import stamp_ns, to_time

    env = ros_env(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sites = load_bundle(default_bundle_path()).imu_layout.sites
    import yaml

    from despite_ros.bringup import share_dir

    params = yaml.safe_load((share_dir() / "config" / "har.yaml").read_text())
    params["matching_node"]["ros__parameters"]["min_similarity"] = 0.25       # --params: a file of one's own
    params["har_node"]["ros__parameters"]["max_range"] = 12.5
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(params))
    proc = subprocess.Popen([str(BIN), "bringup", "--params", str(mine), "--points-topic", "/ouster/points",
                             "--namespace", "robot1",
                             "--wearers", "alice", "--imu-topic", "/{wearer}/imu_{site}", "--use-sim-time",
                             "--respawn", "--set", "har_node.providers=cpu", "--set", "matching_node.providers=cpu",
                             "--set", "har_node.diagnostics_period=0.5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bringup_probe", context=ctx)
    acts, diags = [], []
    node.create_subscription(ActivityArray, "/robot1/despite/activities", acts.append,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 50)
    pub = node.create_publisher(PointCloud2, "/ouster/points", qos_profile_sensor_data)
    clock = node.create_publisher(Clock, "/clock", 10)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)

    def wait(cond, seconds, what):
        deadline = time.monotonic() + seconds
        while not cond() and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
            assert proc.poll() is None, f"bringup exited: {proc.communicate()[1][-2000:]}"
        assert cond(), what

    def graph() -> dict[str, set[str]]:
        return {"har": {t for t, _ in node.get_subscriber_names_and_types_by_node("har_node", "/robot1")},
                "match": {t for t, _ in node.get_subscriber_names_and_types_by_node("matching_node", "/robot1")}}

    def get_params(node_name: str, names: list[str]) -> list:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        cli = node.create_client(GetParameters, f"{node_name}/get_parameters")
        wait(lambda: cli.service_is_ready(), 20, f"{node_name}/get_parameters not available")
        fut = cli.call_async(GetParameters.Request(names=names))
        wait(fut.done, 20, f"{node_name}/get_parameters did not answer")
        node.destroy_client(cli)
        return [(list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "array" else v)
                for v in map(parameter_value_to_python, fut.result().values)]

    def nodes_up() -> bool:
        names = node.get_node_names_and_namespaces()
        return ("har_node", "/robot1") in names and ("matching_node", "/robot1") in names

    expected = {f"/alice/imu_{s}" for s in sites} | {"/robot1/despite/embeddings"}
    kids: list[int] = []
    try:
        wait(lambda: nodes_up() and pub.get_subscription_count() > 0, 60, "the nodes did not come up in /robot1")
        kids = children(proc.pid, "har_node") + children(proc.pid, "matching_node")
        # discovery reports a node before all of its subscriptions: wait for them, then compare exactly
        wait(lambda: expected <= graph()["match"], 30, f"matching_node's subscriptions: {graph()['match']}")
        g = graph()
        assert "/ouster/points" in g["har"], g
        assert not any("person_" in t for t in g["match"]), g            # --wearers replaced the file's wearers
        assert node.count_publishers("/robot1/despite/events") == 1 and node.count_publishers("/despite/activities") == 0
        # the values the nodes run with: from --params, --set and the launch arguments
        assert get_params("/robot1/har_node", ["max_range", "providers", "diagnostics_period", "use_sim_time"]) == \
            [12.5, "cpu", 0.5, True]
        assert get_params("/robot1/matching_node", ["min_similarity", "wearers", "imu_topic"]) == \
            [0.25, ["alice"], "/{wearer}/imu_{site}"]

        # /clock and scans stamped in sim time, 10 Hz; har_node's windows follow the message stamps
        scans = sim_scans(4.0, 1, 10.0, beams=32, columns=512)
        for i, s in enumerate(scans):
            t = SIM_T0 + i * 10**8
            clock.publish(Clock(clock=to_time(t)))
            m = PointCloud2()
            fill_message(m, s, frame_id="os_sensor", field_factory=PointField)
            m.header.stamp = to_time(t)
            pub.publish(m)
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.02)
        wait(lambda: any(a.people for a in acts), 30, "no ActivityArray on /robot1/despite/activities")
        stamps = [stamp_ns(a.header.stamp) for a in acts if a.people]
        assert all(SIM_T0 <= s <= SIM_T0 + len(scans) * 10**8 for s in stamps), stamps
        assert acts[-1].header.frame_id == "os_sensor"
        wait(lambda: any(st.name.startswith("har_node") for d in diags for st in d.status), 20, "no har_node diagnostics")
        diag_t = [stamp_ns(d.header.stamp) for d in diags if any(st.name.startswith("har_node") for st in d.status)]
        # on the node clock = /clock: within the published sim time, nowhere near the wall clock
        assert all(SIM_T0 <= t <= SIM_T0 + len(scans) * 10**8 for t in diag_t), (diag_t, SIM_T0)

        # --respawn: a killed har_node is started again
        (old,) = children(proc.pid, "har_node")
        os.kill(old, signal.SIGKILL)
        wait(lambda: (new := children(proc.pid, "har_node")) and new != [old], 30, "har_node was not restarted")
        kids += children(proc.pid, "har_node")
        # the graph may still list the dead node: the restarted one is up when it publishes its own
        # diagnostics (paced by /clock, which keeps advancing here)
        seen = len(diags)
        t_clock = [SIM_T0 + len(scans) * 10**8]

        def new_diag() -> bool:
            t_clock[0] += 10**8
            clock.publish(Clock(clock=to_time(t_clock[0])))
            return any(st.name.startswith("har_node") for d in diags[seen:] for st in d.status)

        wait(new_diag, 60, "the restarted har_node published no diagnostics")
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)          # as systemd or docker stop would
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            err = "bringup did not stop within 30 s of SIGTERM"
        for pid in kids:                                 # no node may outlive the test
            try:
                os.kill(pid, signal.SIGKILL)
                err += f"\nnode pid {pid} was still running after bringup ended"
            except ProcessLookupError:
                pass
    assert "har_node exited with code -9; restarted (restart 1)" in err, err[-2000:]
    assert "still running" not in err and "did not stop" not in err, err[-2000:]
    assert proc.returncode == 0, err[-2000:]
