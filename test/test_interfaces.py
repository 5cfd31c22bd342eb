"""despite_ros/msg interfaces: generated, importable, and carried field for field between two
processes over DDS; the colcon build of the package provides messages, executables and data."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.ros_env import REPO, ros_env
from helpers.sample_messages import sample_messages


def fields_of(msg, prefix=""):
    """Flatten a ROS message into {path: python value} for a field-by-field comparison."""
    out = {}
    for name in msg.get_fields_and_field_types():
        v = getattr(msg, name)
        if hasattr(v, "get_fields_and_field_types"):
            out.update(fields_of(v, f"{prefix}{name}."))
        elif isinstance(v, (list, tuple)) and v and hasattr(v[0], "get_fields_and_field_types"):
            for i, item in enumerate(v):
                out.update(fields_of(item, f"{prefix}{name}[{i}]."))
            out[f"{prefix}{name}.len"] = len(v)
        else:
            out[f"{prefix}{name}"] = list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v
    return out


def test_messages_cross_processes_over_dds(tmp_path):
    from rclpy.serialization import deserialize_message

    env = ros_env(tmp_path)
    # cwd outside the repository: `python -m` puts cwd first on sys.path, and the source tree has no msg module.
    pub = subprocess.Popen([sys.executable, "-m", "helpers.msg_publisher"], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sub = subprocess.run([sys.executable, "-m", "helpers.msg_subscriber", str(tmp_path / "got"), "40"],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)
    finally:
        pub.terminate()
        try:
            pub.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pub.kill()
            pub.wait()
    assert sub.returncode == 0, f"subscriber: {sub.stderr}\npublisher: {pub.stderr.read() if pub.stderr else ''}"
    for name, sent in sample_messages().items():
        got = deserialize_message((tmp_path / "got" / f"{name}.cdr").read_bytes(), type(sent))
        want, have = fields_of(sent), fields_of(got)
        assert have.keys() == want.keys()
        for key in want:
            w, h = want[key], have[key]
            if isinstance(w, float) or (isinstance(w, list) and w and isinstance(w[0], float)):
                assert h == pytest.approx(w, rel=1e-6), f"{name}.{key}"
            else:
                assert h == w, f"{name}.{key}: sent {w!r}, received {h!r}"


def test_message_definitions_match_architecture():
    from despite_ros.msg import ActivityArray, ActivityEvent, Embedding, MatchArray, MatchScore, PersonActivity

    assert ActivityEvent.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "track_id": "uint32", "wearer_id": "string", "label": "string",
        "class_id": "uint16", "confidence": "float", "start": "builtin_interfaces/Time",
        "end": "builtin_interfaces/Time", "ongoing": "boolean"}
    assert PersonActivity.get_fields_and_field_types() == {
        "track_id": "uint32", "wearer_id": "string", "position": "geometry_msgs/Point", "label": "string",
        "class_id": "uint16", "confidence": "float", "scores": "sequence<float>",
        "window_start": "builtin_interfaces/Time", "window_duration": "float"}
    assert ActivityArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "model_id": "string", "source": "string",
        "people": "sequence<despite_ros/PersonActivity>"}
    assert Embedding.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "modality": "string", "track_id": "uint32", "wearer_id": "string",
        "frame_stamps": "sequence<builtin_interfaces/Time>", "data": "sequence<float>"}
    assert MatchScore.get_fields_and_field_types() == {
        "wearer_id": "string", "track_id": "uint32", "similarity": "float", "probability": "float", "assigned": "boolean"}
    assert MatchArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "wearer_ids": "sequence<string>", "track_ids": "sequence<uint32>",
        "similarity": "sequence<float>", "assignments": "sequence<despite_ros/MatchScore>"}


def test_rosbags_typestore_matches_rclpy_cdr():
    """The rosbags typestore (bags without ROS) and rclpy agree on our messages: rclpy's bytes decode
    in rosbags, and rosbags' bytes decode in rclpy to the message that was sent. (Not byte for byte:
    rclpy's serializer leaves alignment padding uninitialised, so its bytes vary from call to call.)"""
    from rclpy.serialization import deserialize_message, serialize_message

    from despite_core.data.rosbag import typestore

    ts = typestore()
    sent = sample_messages()["ActivityArray"]
    raw = serialize_message(sent)
    msg = ts.deserialize_cdr(raw, "despite_ros/msg/ActivityArray")
    assert msg.people[0].label == "wave" and msg.people[0].position.y == -2.25
    t = "despite_ros/msg/ActivityArray"
    mine = bytes(ts.serialize_cdr(msg, t))
    back = deserialize_message(mine, type(sent))

    def canonical(data: bytes) -> bytes:               # zero padding: rosbags re-serialises what it decoded
        return bytes(ts.serialize_cdr(ts.deserialize_cdr(data, t), t))

    assert canonical(raw) == mine and canonical(serialize_message(back)) == mine and len(mine) == len(raw)


@pytest.mark.skipif(shutil.which("colcon", path=os.path.dirname(sys.executable)) is None,
                    reason="colcon is not installed in this environment (make test installs it)")
def test_colcon_build_provides_messages_executables_and_data(tmp_path):
    """colcon build with the venv as underlay, as on a ROS machine (ROS_ON_PIP.md): the install space
    holds the generated messages, node executables in lib/despite_ros and launch/config/models."""
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    # A clean copy of the package, as a user's workspace would hold it (no build/, no venv).
    shutil.copytree(REPO, ws / "src" / "despite_ros",
                    ignore=shutil.ignore_patterns(".venv", "build", "install", "log", ".git", "__pycache__", "out"))
    venv = Path(sys.prefix)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(venv), CMAKE_PREFIX_PATH=str(venv),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    colcon = str(venv / "bin" / "colcon")
    out = subprocess.run(
        [colcon, "build", "--base-paths", "src", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF", "-G", "Ninja"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    prefix = ws / "install" / "despite_ros"
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "despite_ros" / "msg" / "_activity_array.py").is_file()
    assert (site / "despite_ros" / "__init__.py").read_text().startswith('"""despite_ros: the online half')
    assert (site / "despite_core" / "data" / "store.py").is_file()
    assert os.access(prefix / "lib" / "despite_ros" / "sim_node", os.X_OK)
    for d in ("launch/har.launch.py", "config/fastdds_profile.xml", "config/har.yaml", "models/README.md", "msg/ActivityArray.msg",
              "rviz/despite.rviz"):
        assert (prefix / "share" / "despite_ros" / d).is_file(), d
    # The installed messages import from the colcon install space (PYTHONPATH as `source install/setup.bash` sets).
    check = subprocess.run(
        [sys.executable, "-c", "import despite_ros.msg as m, despite_ros; print(m.ActivityArray().source == '', despite_ros.__file__)"],
        env=dict(env, PYTHONPATH=str(site)), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert str(site) in check.stdout
