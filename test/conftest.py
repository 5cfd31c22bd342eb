"""Shared pytest set-up. Tests import the INSTALLED despite_core / despite_ros (make test re-installs
them from the working tree first), because the generated messages exist only in the install."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def ros(tmp_path, monkeypatch):
    """An rclpy context in this process, on the test's own ROS domain, home and log directory."""
    import rclpy

    from helpers.ros_env import ros_env

    for k, v in ros_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """One simulated scene, written once for the session: ``store/`` (what despite synth stores) and
    ``bag/`` (its rosbag2 bag): 15 s, 2 people, 16 beams, seed 21. Tests write elsewhere."""
    import subprocess
    import sys
    from pathlib import Path

    d = tmp_path_factory.mktemp("synth21")
    out = subprocess.run([str(Path(sys.executable).parent / "despite"), "synth", "--out", str(d / "store"), "--bag",
                          str(d / "bag"), "--minutes", "0.25", "--people", "2", "--seed", "21", "--lidar-beams", "16",
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return d


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """A 36 s, 2-person, 16-beam synthetic store for training tests (one per test module)."""
    from despite_core.data.synth.generate import generate
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.world import WorldConfig

    out = tmp_path_factory.mktemp("train") / "store"
    generate(WorldConfig(minutes=0.6, scene_minutes=0.15, people=2, seed=11, lidar=LidarConfig(beams=16, columns=512)),
             out, progress=False)
    return out
