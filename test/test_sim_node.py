"""sim_node end to end: the real node process publishes the synthetic world over DDS and a second
process receives scans (all fields, with people in them), ground truth, and IMU on every wearer's
every site. Rates come from the messages' stamps, which the simulator sets exactly (scan k at
k / lidar_rate, IMU sample j at j / imu_rate of the node's parameters), not from how many messages
arrived in wall time; gravity is bounded from the configuration. Nothing here depends on the
machine's speed: the probe listens until the node has exited, and a message lost on the way (the
clouds are read best effort, as the nodes read them) leaves a gap of whole periods, which every
check allows."""
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from helpers.ros_env import ros_env

NODE = Path(sys.prefix) / "lib" / "despite_ros" / "sim_node"
STAMP_TOL_NS = 1_000   # stamps are float seconds since the epoch rounded to ns: ~0.24 us ulp at 1.7e9 s


class _Upper:
    """A generator whose every uniform draw is the top of its range: the largest speeds the world's
    parameter draws (motion.draw_params, Style.random) can produce."""

    def uniform(self, low=0.0, high=1.0, size=None):
        return high

    def random(self, size=None):
        return 0.0


def fastest_body_speed(difficulty: float) -> float:
    """The fastest the body translates (m/s): the largest speed of a moving activity times the
    largest style speed factor at this difficulty (world.simulate_person's Style.random)."""
    from despite_core.data.synth.motion import MOVING, Style, draw_params

    return max(draw_params(a, _Upper())["speed"] for a in MOVING) * Style.random(_Upper(), max(difficulty, 0.05)).speed


def periods(stamps_ns: list[int], period_ns: int) -> np.ndarray:
    """Gaps between consecutive stamps in whole periods; asserts every gap is a whole, positive
    number of periods (a lost message leaves 2, 3, ...; the simulator's clock leaves nothing else)."""
    gaps = np.diff(np.asarray(stamps_ns, np.int64))
    k = np.rint(gaps / period_ns).astype(np.int64)
    assert (k >= 1).all() and (np.abs(gaps - k * period_ns) <= STAMP_TOL_NS).all(), (period_ns, gaps[:20])
    return k


def test_sim_node_publishes_the_world(tmp_path):
    assert NODE.is_file() and os.access(NODE, os.X_OK), f"{NODE} missing: run `make install`"
    env = ros_env(tmp_path)
    from despite_core.data.synth.imu import GRAVITY
    from despite_ros.nodes.sim_node import SimParams

    params = SimParams(lidar_beams=16, lidar_columns=512, scene_seconds=20.0, duration=8.0, rate=1.0, seed=4)
    world = params.world()
    imu_cfg = world.imu.scaled(world.difficulty)             # what sim_node's world simulates
    topics = [f"/person_{p}/imu/{s}" for p in range(1, params.people + 1) for s in imu_cfg.sites]
    # The probe subscribes first (the node is started once it says so) and listens until the node has
    # exited (and 1 s more for what is still on its way), not for a fixed window: how much it
    # receives does not depend on how fast either process starts.
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    probe = subprocess.Popen([sys.executable, "-m", "helpers.topic_probe", "180", "--ready", str(ready), "--until",
                              str(stop), *topics], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    node = None
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and probe.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the probe did not subscribe"
        args = [a for k, v in asdict(params).items() for a in ("-p", f"{k}:={v}")]
        node = subprocess.Popen([str(NODE), "--ros-args", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        node_rc = node.wait(timeout=90)
        time.sleep(1.0)
        stop.touch()
        out, err = probe.communicate(timeout=60)
    finally:
        for p in (node, probe):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert node_rc == 0, node.stderr.read()
    assert probe.returncode == 0, err
    r = json.loads(out)
    assert r["fields"] == ["x", "y", "z", "intensity", "t", "ring", "gt_person"]
    assert max(r["person_points"]) > 0
    assert r["gt"] >= 1 and set(r["labels"]) - {""}

    # Scans: two are enough to see the spacing; every gap is whole scan periods of lidar_rate and
    # the gaps' greatest common divisor is one period (not a multiple: no scan skipped by the node).
    lidar_ns, imu_ns = round(1e9 / params.lidar_rate), round(1e9 / params.imu_rate)
    assert imu_ns * round(params.imu_rate / params.lidar_rate) == lidar_ns   # IMU samples per scan period
    clouds = r["cloud_stamps_ns"]
    assert len(clouds) >= 2, r["clouds"]
    assert math.gcd(*periods(clouds, lidar_ns).tolist()) == 1
    # ground truth is stamped with the scans' clock, on their grid
    off = (np.asarray(r["gt_stamps_ns"], np.int64) - clouds[0]) % lidar_ns
    assert (np.minimum(off, lidar_ns - off) <= STAMP_TOL_NS).all(), off

    # IMU: every wearer's every site is published; per topic the stamps strictly increase, every gap
    # is whole periods of imu_rate with greatest common divisor one period, and the samples lie on
    # the scans' clock (the IMU grid contains the scan grid).
    # The mean specific force in the world frame is gravity plus the velocity change over the time
    # the samples span: the simulator's acceleration is the central difference of a central-
    # difference velocity, so over a run of consecutive samples dt * sum(acc) telescopes to a
    # difference of end velocities, at most 2 * v_max per run, v_max = twice the fastest body
    # speed (a limb moves at most twice as fast as the body). Plus 3 sigma of the noise model:
    # orientation error (offset and random walk over the run) times g, accelerometer bias (turn-on
    # and walk) and white noise averaged over the samples. Publishing the acceleration without
    # gravity, in the sensor frame or with the orientation inverted breaks it.
    v_max = 2 * fastest_body_speed(world.difficulty)
    T_run = params.duration                                 # no error source walks longer than this
    for t in topics:
        got = r["imu"][t]
        stamps = got["stamps_ns"]
        assert len(stamps) >= 2, (t, len(stamps))
        k = periods(stamps, imu_ns)
        assert math.gcd(*k.tolist()) == 1, (t, np.unique(k))
        off = (np.asarray(stamps, np.int64) - clouds[0]) % imu_ns
        assert (np.minimum(off, imu_ns - off) <= STAMP_TOL_NS).all(), (t, off[:20])

        n = len(stamps)
        runs = 1 + int((k > 1).sum())                       # runs of consecutive samples between losses
        seconds = n / params.imu_rate
        noise = 3 * ((imu_cfg.orientation_offset + imu_cfg.orientation_walk * math.sqrt(T_run)) * GRAVITY
                     + imu_cfg.acc_bias + imu_cfg.acc_bias_walk * math.sqrt(T_run)
                     + imu_cfg.acc_noise_density * math.sqrt(params.imu_rate / 2) / math.sqrt(n))
        bound = runs * 2 * v_max / seconds + noise
        # Enough consecutive samples for the check to mean something: a bound under g rejects a
        # reading without gravity or with twice gravity (each off by g). 8 s published (800 samples
        # per topic, read reliably): bound 2.5 m/s^2 without a loss, 4.6 with one, 6.7 with two;
        # measured errors are under 0.5.
        assert bound < GRAVITY, ("too few consecutive IMU samples received for the gravity check", t, n, runs, bound)
        mean = np.asarray(got["acc_world"]).mean(0)
        assert np.abs(mean - [0.0, 0.0, GRAVITY]).max() < bound, (t, mean, bound)


def test_sim_node_rejects_bad_parameters(tmp_path):
    out = subprocess.run([str(NODE), "--ros-args", "-p", "people:=12"], env=ros_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "people" in (out.stderr + out.stdout)
