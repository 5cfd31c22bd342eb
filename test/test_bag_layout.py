"""Bags in rosbag2's layouts: `despite synth --bag NAME` writes NAME/NAME_0.mcap + metadata.yaml
(as `ros2 bag record -o NAME`), `--bag NAME.mcap` one MCAP file; both open with rosbags (bag-eval's
reader) and with the MCAP project's own reader and ROS 2 decoder, and score the same."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers.bags import mcap_chunks, mcap_messages

BIN = Path(sys.prefix) / "bin"


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("layout")
    for name in ("scene", "scene.mcap"):
        out = subprocess.run([str(BIN / "despite"), "synth", "--bag", str(d / name), "--minutes", "0.1", "--people", "2",
                              "--seed", "5", "--lidar-beams", "16", "--quiet"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    return d


def test_directory_bag_is_rosbag2_layout(bags):
    d = bags / "scene"
    assert sorted(p.name for p in d.iterdir()) == ["metadata.yaml", "scene_0.mcap"]
    info = yaml.safe_load((d / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == ["scene_0.mcap"] and [f["path"] for f in info["files"]] == ["scene_0.mcap"]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    decoded = mcap_messages(d / "scene_0.mcap")
    assert counts == {t: len(m) for t, m in decoded.items()} and info["message_count"] == sum(counts.values())
    assert counts["/lidar/points"] == 60 and {t for t in counts if "/imu/" in t}


def test_single_file_bag_and_both_readers(bags):
    from despite_core.data.pointcloud2 import decode_fields
    from despite_core.data.rosbag import iter_messages, open_bag

    single = bags / "scene.mcap"
    assert single.is_file() and not list(bags.glob(".*partial*"))          # no temporary directory left
    a, b = mcap_messages(single), mcap_messages(bags / "scene" / "scene_0.mcap")
    assert {t: len(m) for t, m in a.items()} == {t: len(m) for t, m in b.items()}
    cloud = a["/lidar/points"][10]                                          # decoded by mcap_ros2, not rosbags
    assert cloud.width == len(cloud.data) // cloud.point_step > 100
    assert [f.name for f in cloud.fields][:3] == ["x", "y", "z"]
    gt = a["/ground_truth/activities"][10]
    assert gt.source == "ground_truth" and {p.wearer_id for p in gt.people} == {"person_1", "person_2"}
    imu = next(m for t, m in a.items() if "/imu/" in t)[0]
    assert 5 < np.linalg.norm([imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z]) < 15
    for path in (single, bags / "scene"):                                   # bag-eval's reader takes both
        reader = open_bag(path)
        try:
            msgs = [m for _, _, m in iter_messages(reader, {"/lidar/points"}, {})]
        finally:
            reader.close()
        assert len(msgs) == len(a["/lidar/points"])
        x = decode_fields(msgs[10], ["x"])["x"]
        ref = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, cloud.point_step)[:, :4].copy().view(np.float32)[:, 0]
        assert np.array_equal(x, ref)


def test_bag_eval_scores_both_layouts_alike(bags):
    from despite_core.runtime.inference import default_bundle_path
    from despite_ros.bag_eval import evaluate_offline

    res = [evaluate_offline(p, default_bundle_path(), segmentation="ground-truth", progress=False)
           for p in (bags / "scene", bags / "scene.mcap")]
    assert res[0]["windows"] == res[1]["windows"] > 0 and res[0]["accuracy"] == res[1]["accuracy"]


def test_existing_bags_are_not_overwritten_and_failures_leave_nothing(tmp_path):
    from despite_core.data.rosbag import BagWriter

    (tmp_path / "old.mcap").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="exists already"):
        BagWriter(tmp_path / "old.mcap")
    assert (tmp_path / "old.mcap").read_bytes() == b"keep"
    with pytest.raises(FileNotFoundError, match="no such directory"):
        BagWriter(tmp_path / "missing" / "x.mcap")
    for name in ("broken", "broken.mcap"):
        with pytest.raises(RuntimeError):
            with BagWriter(tmp_path / name) as w:
                w.write(w.add_connection("/x", "std_msgs/msg/String"), 1, b"\0\1\0\0\1\0\0\0a\0")
                raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mcap"]


def test_chunks_carry_crcs_and_a_corrupt_chunk_is_skipped_and_counted(bags, tmp_path):
    """Bit rot inside a chunk used to be decoded as data: chunks now carry CRC-32s (written by
    BagWriter), and the reader skips and counts a chunk whose CRC fails."""
    import struct

    from mcap.stream_reader import StreamReader

    from despite_core.data.rosbag import iter_messages, open_bag

    src = bags / "scene.mcap"
    chunks = mcap_chunks(src)
    assert len(chunks) >= 3
    crcs = [struct.unpack_from("<I", src.read_bytes(), off + 24)[0] for off, _ in chunks]
    assert all(crcs), crcs
    assert sum(1 for _ in StreamReader(str(src), validate_crcs=True).records) > 0     # the MCAP library agrees
    bad = tmp_path / "bad.mcap"
    data = bytearray(src.read_bytes())
    off, length = chunks[len(chunks) // 2]
    data[off + length // 2] ^= 0x40                                  # one bit flipped mid-chunk
    bad.write_bytes(bytes(data))
    total = sum(len(v) for v in mcap_messages(src).values())
    counts: dict = {}
    reader = open_bag(bad)
    try:
        got = sum(1 for _ in iter_messages(reader, {c.topic for c in reader.connections}, counts))
    finally:
        reader.close()
    assert counts.get("corrupt_chunks") == 1 and 0 < got < total, (counts, got, total)
    assert not counts.get("truncated")                               # the chunks after it are read
