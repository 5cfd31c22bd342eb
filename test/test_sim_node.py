"""sim_node end to end: the real node process publishes the synthetic world over DDS and a second
process receives scans (all fields, with people in them), IMU at its rate, and ground truth."""
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.ros_env import ros_env

NODE = Path(sys.prefix) / "lib" / "despite_ros" / "sim_node"


def test_sim_node_publishes_the_world(tmp_path):
    assert NODE.is_file() and os.access(NODE, os.X_OK), f"{NODE} missing: run `make install`"
    env = ros_env(tmp_path)
    from despite_core.data.synth.imu import ImuConfig

    topics = [f"/person_{p}/imu/{s}" for p in (1, 2) for s in ImuConfig().sites]     # sim_node: 2 people
    probe = subprocess.Popen([sys.executable, "-m", "helpers.topic_probe", "14", *topics], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node = subprocess.Popen(
        [str(NODE), "--ros-args", "-p", "lidar_beams:=16", "-p", "lidar_columns:=512", "-p", "scene_seconds:=20.0",
         "-p", "duration:=8.0", "-p", "rate:=1.0", "-p", "seed:=4"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        node_rc = node.wait(timeout=60)
        out, err = probe.communicate(timeout=60)
    finally:
        for p in (node, probe):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert node_rc == 0, node.stderr.read()
    assert probe.returncode == 0, err
    r = json.loads(out)
    # 8 s at 10 Hz = 80 scans; discovery takes a few seconds, so expect a good share, not all.
    assert r["clouds"] >= 30, r["clouds"]
    assert r["fields"] == ["x", "y", "z", "intensity", "t", "ring", "gt_person"]
    assert max(r["person_points"]) > 0
    assert r["gt"] >= 30 and set(r["labels"]) - {""}
    # IMU at 100 Hz: ten samples per scan period; stamps strictly increase.
    span = r["imu_stamps"][-1] - r["imu_stamps"][0]
    assert abs((len(r["imu_stamps"]) - 1) / span - 100.0) < 5.0
    assert all(b > a for a, b in zip(r["imu_stamps"], r["imu_stamps"][1:]))
    # every wearer's every site is published
    assert all(r["imu_count"][t] >= 200 for t in topics), r["imu_count"]
    # The mean specific force in the world frame over the run is gravity plus (v_end - v_start) / T.
    # Bound from the configuration: a limb moves at most twice the fastest run (3.5 m/s x 1.2 speed
    # factor), so |dv| <= 2 * 8.4 m/s; plus 3 sigma of the orientation offset (0.5 deg) times g and
    # of the accelerometer bias (3 mg). Publishing the acceleration without gravity, in the sensor
    # frame or with the orientation inverted breaks it.
    import numpy as np

    from despite_core.data.synth.imu import GRAVITY

    c = ImuConfig()
    for t in topics:
        span_t = r["imu_count"][t] / c.rate
        bound = 2 * 2 * 3.5 * 1.2 / span_t + 3 * c.orientation_offset * GRAVITY + 3 * c.acc_bias
        mean = np.array(r["imu_world_mean"][t])
        assert np.abs(mean - [0.0, 0.0, GRAVITY]).max() < bound, (t, mean, bound)


def test_sim_node_rejects_bad_parameters(tmp_path):
    out = subprocess.run([str(NODE), "--ros-args", "-p", "people:=12"], env=ros_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "people" in (out.stderr + out.stdout)
