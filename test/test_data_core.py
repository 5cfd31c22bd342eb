"""Unit tests of the numpy-only data modules: rotations, resampling, FPS, the store, windows."""
import json
import subprocess
import sys

import numpy as np
import pytest

from despite_core.data.imu_layout import LIPD_SITES, ImuLayout, ImuLayoutError
from despite_core.data.resample import (ResampleError, check_stamps, interp_linear, interp_quat,
                                        nearest_index, resample_imu)
from despite_core.data.rotations import (align_z_to, axis_angle_to_matrix, matrix_to_axis_angle,
                                         matrix_to_quat, quat_multiply, quat_to_matrix, rot_z, slerp)
from despite_core.data.sampling import farthest_point_indices, farthest_point_sample
from despite_core.data.store import SMPL_JOINT_NAMES, Sequence, Store, StoreError, StoreWriter
from despite_core.data.windows import cut_window, iter_windows, window_label, window_starts, window_text

RNG = np.random.default_rng(0)


def random_rotations(n):
    return axis_angle_to_matrix(RNG.normal(size=(n, 3)))


# ---------------------------------------------------------------- rotations
def test_quat_matrix_round_trip():
    m = random_rotations(200)
    assert np.allclose(quat_to_matrix(matrix_to_quat(m)), m, atol=1e-9)
    # Near-180-degree rotations exercise every branch of matrix_to_quat.
    for axis in np.eye(3):
        r = axis_angle_to_matrix(axis * (np.pi - 1e-7))
        assert np.allclose(quat_to_matrix(matrix_to_quat(r)), r, atol=1e-6)


def test_axis_angle_round_trip_and_multiply():
    v = RNG.normal(size=(100, 3))
    v = v / np.linalg.norm(v, axis=1, keepdims=True) * RNG.uniform(0, np.pi - 0.01, (100, 1))
    assert np.allclose(matrix_to_axis_angle(axis_angle_to_matrix(v)), v, atol=1e-8)
    a, b = random_rotations(10), random_rotations(10)
    q = quat_multiply(matrix_to_quat(a), matrix_to_quat(b))
    assert np.allclose(quat_to_matrix(q), a @ b, atol=1e-9)


def test_slerp_constant_angular_rate():
    q0 = matrix_to_quat(np.eye(3))
    q1 = matrix_to_quat(rot_z(np.array(2.0)))
    for u in (0.0, 0.25, 0.5, 1.0):
        assert np.allclose(quat_to_matrix(slerp(q0, q1, np.array(u))), rot_z(np.array(2.0 * u)), atol=1e-9)
    # Takes the short arc even when handed the opposite-sign quaternion.
    assert np.allclose(quat_to_matrix(slerp(q0, -q1, np.array(0.5))), rot_z(np.array(1.0)), atol=1e-9)


def test_align_z_to():
    d = RNG.normal(size=(50, 3))
    d = np.concatenate([d, [[0, 0, -1.0], [0, 0, 1.0]]])
    r = align_z_to(d)
    assert np.allclose(r @ np.array([0, 0, 1.0]), d / np.linalg.norm(d, axis=1, keepdims=True), atol=1e-9)


# ---------------------------------------------------------------- resampling
def test_interp_linear_and_errors():
    t = np.array([0.0, 1.0, 2.0])
    v = np.array([[0.0], [10.0], [30.0]])
    assert np.allclose(interp_linear(t, v, np.array([0.5, 1.5, 2.0])), [[5.0], [20.0], [30.0]])
    with pytest.raises(ResampleError, match="outside the source range"):
        interp_linear(t, v, np.array([2.5]))
    with pytest.raises(ResampleError, match="not strictly increasing"):
        check_stamps(np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ResampleError, match="NaN"):
        check_stamps(np.array([0.0, np.nan]))


def test_resample_imu_slerps_orientation_and_lerps_the_rest():
    layout = ImuLayout(sites=("a",), channels=("rotmat", "acc", "gyro"))
    t = np.array([0.0, 1.0])
    rot = np.stack([np.eye(3), rot_z(np.array(1.0))]).reshape(2, 1, 9)
    acc = np.array([[[0, 0, 9.81]], [[2, 0, 9.81]]])
    gyro = np.array([[[0, 0, 1.0]], [[0, 0, 1.0]]])
    imu = np.concatenate([rot, acc, gyro], axis=-1)
    out = resample_imu(t, imu, layout, np.array([0.5]))
    assert np.allclose(out[0, 0, :9].reshape(3, 3), rot_z(np.array(0.5)), atol=1e-6)
    assert np.allclose(out[0, 0, 9:12], [1.0, 0, 9.81])
    assert np.allclose(out[0, 0, 12:], [0, 0, 1.0])


def test_interp_quat_matches_rotation_at_constant_rate():
    t = np.linspace(0, 1, 11)
    q = matrix_to_quat(rot_z(t * 3.0))
    out = interp_quat(t, q, np.array([0.55]))
    assert np.allclose(quat_to_matrix(out), rot_z(np.array([1.65])), atol=1e-9)


def test_nearest_index():
    assert nearest_index(np.array([0.0, 1.0, 2.0]), np.array([-1, 0.4, 0.6, 1.5, 9])).tolist() == [0, 0, 1, 1, 2]


# ---------------------------------------------------------------- imu layout
def test_imu_layout_validation_and_select():
    with pytest.raises(ImuLayoutError, match="unknown IMU channel 'mag'"):
        ImuLayout(channels=("rotmat", "mag"))
    src = ImuLayout(sites=LIPD_SITES, channels=("rotmat", "acc", "gyro"))
    assert src.width == 15 and src.flat_width == 60
    imu = np.zeros((5, 4, 15), np.float32)
    imu[..., :9] = np.eye(3).reshape(9)
    imu[:, 2, 9:12] = 7.0
    dst = ImuLayout(sites=("left_lower_leg",), channels=("quat", "acc"))
    out = dst.select(imu, src)
    assert out.shape == (5, 1, 7)
    assert np.allclose(out[..., :4], [1, 0, 0, 0]) and np.allclose(out[..., 4:], 7.0)
    with pytest.raises(ImuLayoutError, match="gravity differs"):
        ImuLayout(gravity="removed").select(imu, src)
    with pytest.raises(ImuLayoutError, match="lacks sites"):
        ImuLayout(sites=("head",), channels=("acc",)).select(imu, src)
    assert ImuLayout.from_dict(src.to_dict()) == src


# ---------------------------------------------------------------- farthest point sampling
def brute_force_fps(points, k, start=0):
    chosen = [start]
    for _ in range(k - 1):
        d = np.min(np.linalg.norm(points[:, None] - points[chosen][None], axis=-1), axis=1)
        chosen.append(int(np.argmax(d)))
    return np.array(chosen)


def test_fps_matches_brute_force_and_pads():
    pts = RNG.normal(size=(500, 3)).astype(np.float32)
    assert farthest_point_indices(pts, 32).tolist() == brute_force_fps(pts, 32).tolist()
    few = RNG.normal(size=(5, 3))
    idx = farthest_point_indices(few, 12)
    assert len(idx) == 12 and set(idx.tolist()) == set(range(5))
    assert farthest_point_sample(pts, 8).shape == (8, 3)
    with pytest.raises(ValueError, match="empty cloud"):
        farthest_point_indices(np.zeros((0, 3)), 4)


def test_batched_normalisation_equals_one_frame_at_a_time():
    from despite_core.data.sampling import normalise_frame, normalise_frames

    # sizes around k (fewer points are cycled), empty frames, and ties (duplicated points)
    frames = [RNG.normal(size=(n, 3)).astype(np.float32) * [0.3, 0.2, 0.8] for n in (0, 7, 255, 256, 257, 900, 1800)]
    frames.append(np.repeat(frames[-2][:300], 2, axis=0))
    for a, b in zip(normalise_frames(frames, 256), [normalise_frame(f, 256) for f in frames]):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert normalise_frames([], 256) == []


# ---------------------------------------------------------------- store
CLASSES = ("walk", "wave", "sit")
LAYOUT = ImuLayout()


def make_sequence(sid="s1", t=30, fps=10.0, subject="a", with_imu=True, with_joints=True):
    ts = np.arange(t) / fps
    rot = np.broadcast_to(np.eye(3).reshape(9), (t, 4, 9))
    acc = np.broadcast_to([0, 0, 9.81], (t, 4, 3))
    return Sequence(
        sequence_id=sid, subject=subject, fps=fps, timestamps=ts,
        labels=np.array([0] * (t // 2) + [1] * (t - t // 2)),
        text=np.array(["a person walks"] * (t // 2) + [""] * (t - t // 2)),
        points=[RNG.normal(size=(int(RNG.integers(0, 40)), 3)).astype(np.float32) for _ in range(t)],
        imu=np.concatenate([rot, acc], -1).astype(np.float32) if with_imu else None,
        joints=RNG.normal(size=(t, 24, 3)).astype(np.float32) if with_joints else None,
        scene="scene0", person=1,
    )


def write_store(path, seqs, **kw):
    with StoreWriter(path, CLASSES, imu_layout=LAYOUT, joint_names=SMPL_JOINT_NAMES, shard_frames=50, **kw) as w:
        for s in seqs:
            w.add(s)
        w.add_split("by_subject", {"train": [seqs[0].sequence_id], "test": [s.sequence_id for s in seqs[1:]]})


def test_store_round_trip(tmp_path):
    seqs = [make_sequence("s1"), make_sequence("s2", t=40, subject="b"), make_sequence("s3", with_imu=False)]
    write_store(tmp_path / "st", seqs)
    store = Store(tmp_path / "st")
    assert len(store) == 3 and store.class_names == CLASSES and store.imu_layout == LAYOUT
    assert len(list((tmp_path / "st").glob("shard-*.npz"))) == 2  # 70 frames flush the first shard
    for want in seqs:
        got = store.read(want.sequence_id)
        assert np.array_equal(got.timestamps, want.timestamps)
        assert np.array_equal(got.labels, want.labels)
        assert got.text.tolist() == want.text.tolist()
        assert all(np.array_equal(a, b) for a, b in zip(got.points, want.points))
        assert (got.imu is None) == (want.imu is None)
        assert got.scene == "scene0" and got.person == 1
    assert store.split("by_subject", "test") == ["s2", "s3"]
    with pytest.raises(StoreError, match="no split 'val'"):
        store.split("by_subject", "val")
    with pytest.raises(StoreError, match="no split scheme"):
        store.split("nope", "train")
    # No pickle anywhere: every shard loads with allow_pickle=False.
    for shard in (tmp_path / "st").glob("shard-*.npz"):
        np.load(shard, allow_pickle=False)["0/labels"]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: setattr(s, "labels", s.labels[:-1]), r"field 'labels' has shape \(29,\), expected \(30,\)"),
    (lambda s: s.joints.__setitem__((3, 2, 1), np.nan), r"field 'joints' holds NaN/Inf \(first at index \(3, 2, 1\)\)"),
    (lambda s: s.timestamps.__setitem__(5, 0.1), r"'timestamps' is not strictly increasing at frame 5"),
    (lambda s: setattr(s, "imu", s.imu[:, :3]), r"field 'imu' has shape \(30, 3, 12\), expected \(30, 4, 12\)"),
    (lambda s: s.points.__setitem__(4, np.zeros((3, 2))), r"field 'points' frame 4 has shape \(3, 2\)"),
    (lambda s: s.labels.__setitem__(0, 7), r"'labels' holds values in \[0, 7\]"),
    (lambda s: setattr(s, "points", s.points[:10]), r"field 'points' has 10 frames, 'timestamps' has 30"),
])
def test_store_validation_names_sequence_and_field(tmp_path, mutate, message):
    seq = make_sequence("bad_seq")
    mutate(seq)
    with pytest.raises(StoreError, match=message) as e:
        write_store(tmp_path / "st", [seq])
    assert "sequence 'bad_seq'" in str(e.value)


def test_store_read_errors_name_the_shard(tmp_path):
    write_store(tmp_path / "st", [make_sequence("s1")])
    with pytest.raises(StoreError, match="not a sequence store"):
        Store(tmp_path)
    # Corrupt a shard: rewrite it with NaN joints; reading names shard, sequence and field.
    shard = tmp_path / "st" / "shard-00000.npz"
    data = dict(np.load(shard))
    data["0/joints"][0, 0, 0] = np.inf
    np.savez(shard, **data)
    with pytest.raises(StoreError, match=r"shard-00000.npz, sequence 's1': field 'joints' holds NaN/Inf"):
        Store(tmp_path / "st").read("s1")
    meta = json.loads((tmp_path / "st" / "meta.json").read_text())
    meta["imu_layout"]["channels"] = ["rotmat", "magnetometer"]
    (tmp_path / "st" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="unknown IMU channel 'magnetometer'"):
        Store(tmp_path / "st")


# ---------------------------------------------------------------- windows
def test_window_label_rule():
    assert window_label(np.array([1] * 12 + [2] * 12)) == 1  # exactly half is a majority
    assert window_label(np.array([1] * 11 + [2] * 7 + [3] * 6)) == -1  # transition: ambiguous
    assert window_label(np.array([-1] * 20 + [0] * 4)) == -1
    assert window_text(np.array(["", "x", "y", "x"])) == "x"
    assert window_text(np.array(["", ""])) == ""


def test_window_starts_counts():
    ts = np.arange(30) / 10.0
    assert len(window_starts(ts, stride=1)) == 7
    assert len(window_starts(ts, stride=3)) == 3
    assert len(window_starts(np.arange(23) / 10.0)) == 0


def test_cut_window_at_native_rate_is_exact():
    seq = make_sequence(t=30)
    wins = list(iter_windows(seq, stride=2, imu_layout=LAYOUT))
    assert len(wins) == 4
    w = wins[1]
    assert np.allclose(w.stamps, seq.timestamps[2:26])
    assert np.array_equal(w.joints, seq.joints[2:26])
    assert w.points[0] is seq.points[2]
    assert w.label == 0 and w.labels.tolist() == seq.labels[2:26].tolist()


def test_cut_window_resamples_a_faster_source():
    # 20 Hz source: positions linear, orientation slerp, points from the nearest frame.
    t = 60
    ts = np.arange(t) / 20.0
    angle = ts * 2.0
    rot = rot_z(angle).reshape(t, 1, 9).repeat(4, axis=1)
    acc = np.stack([ts, 0 * ts, 9.81 + 0 * ts], -1)[:, None].repeat(4, axis=1)
    joints = np.broadcast_to(ts[:, None, None], (t, 24, 3)).astype(np.float32)
    seq = Sequence("fast", "a", 20.0, ts, np.zeros(t, np.int64), imu=np.concatenate([rot, acc], -1).astype(np.float32),
                   joints=joints, points=[np.full((1, 3), i, np.float32) for i in range(t)])
    w = cut_window(seq, 0.05, imu_layout=LAYOUT)
    assert np.allclose(w.stamps, 0.05 + np.arange(24) / 10)
    assert np.allclose(w.joints[:, 0, 0], w.stamps, atol=1e-6)
    assert np.allclose(w.imu[:, 0, 9], w.stamps, atol=1e-6)
    assert np.allclose(w.imu[:, 0, :9].reshape(24, 3, 3), rot_z(w.stamps * 2.0), atol=1e-5)
    assert [int(p[0, 0]) for p in w.points] == [1 + 2 * i for i in range(24)]
    assert len(window_starts(ts)) == 7  # 3 s at 20 Hz: windows of 2.4 s start every 0.1 s up to 0.6 s


# ---------------------------------------------------------------- imports stay light
def test_numpy_modules_import_neither_torch_nor_rclpy():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\nsys.modules['rclpy'] = None\n"
        "import despite_core, despite_core.data.store, despite_core.data.windows, despite_core.data.resample\n"
        "import despite_core.data.sampling, despite_core.data.pointcloud2, despite_core.data.imu_layout\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
