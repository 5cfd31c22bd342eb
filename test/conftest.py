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
