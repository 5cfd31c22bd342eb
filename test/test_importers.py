"""Tests for the LIPD, MSR-Action3D and BVH importers (despite_core.data.importers).

Every test writes tiny files in the real formats into tmp_path: LIPD pickles with .bin point
files and BABEL JSON, MSR depth .bin files, BVH text. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import pickle
import struct

import numpy as np
import pytest

from despite_core.data.imu_layout import LIPD_SITES, ImuLayout
from despite_core.data.importers import bvh, bvh_format, bvh_rig, lipd, msr
from despite_core.data.importers.common import ImporterError, ImporterWarning, segments_to_frames
from despite_core.data.rotations import rot_x, rot_y, rot_z
from despite_core.data.store import SMPL_JOINT_NAMES, Store
from despite_core.data.synth.kinematics import Kinematics

pytestmark = pytest.mark.filterwarnings("ignore::despite_core.data.importers.common.ImporterWarning")


def _parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


# ================================================================================ common

def test_segments_half_open_and_shortest_wins():
    t = np.arange(30) / 10
    out = segments_to_frames(t, [(0.0, 3.0, "long"), (1.0, 2.0, "short"), (0.0, 1.0, "first")], empty="")
    assert out[:10] == ["first"] * 10          # 0-1 s: "first" (1 s) beats "long" (3 s)
    assert out[10:20] == ["short"] * 10
    assert out[20:] == ["long"] * 10


# ================================================================================== LIPD

def _slot_ori(t: int) -> np.ndarray:
    """(6, 3, 3): a distinct rotation per slot and frame."""
    return np.stack([rot_z(0.1 * (s + 1) + 0.01 * t) @ rot_x(0.05 * s) for s in range(6)])


def _slot_acc(t: int) -> np.ndarray:
    return np.array([[s, 10 + s, 20 + s] for s in range(6)], np.float32) + 1000 * t


def _frame(pc, seq_path: str, t: int) -> dict:
    return {"pc": pc, "imu_ori": _slot_ori(t).reshape(6, 9).astype(np.float32),
            "imu_acc": _slot_acc(t).reshape(-1), "gt_joint": np.full((24, 3), t, np.float32).reshape(-1),
            "seq_path": seq_path, "gt": np.zeros(72), "gt_r": np.zeros(3), "trans": np.zeros(3)}


def _write_points(root, rel: str, n: int, seed: int) -> np.ndarray:
    pts = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    path = root / rel[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    pts.tofile(path)
    return pts


@pytest.fixture
def lipd_root(tmp_path):
    """LIPD_train (2 sequences, 3 + 2 frames), CMU (20 + 5 frames), LIPD_test (inline clouds)."""
    root = tmp_path / "LIPD"
    root.mkdir()
    frames, counts = [], []
    for name, sizes in (("seqA", (5, 0, 3)), ("seqB", (2, 4))):
        for t, n in enumerate(sizes):
            rel = f"./LIPD_train/pc/subj01/{name}/{t:03d}.bin"
            _write_points(root, rel, n, seed=t)
            frames.append(_frame(rel, f"./LIPD_train/subj01/{name}", t))
            counts.append(n)
    (root / "LIPD_train.pkl").write_bytes(pickle.dumps(frames))
    cmu = []
    for seq, n_frames in (("01_01_stageii", 20), ("01_02_stageii", 5)):
        for t in range(n_frames):
            rel = f"./AMASS/CMU/pc/01/{seq}/{t:03d}.bin"
            _write_points(root, rel, 2, seed=t)
            cmu.append(_frame(rel, f"./AMASS/CMU/01/{seq}", t))
    (root / "CMU.pkl").write_bytes(pickle.dumps(cmu))
    test = [_frame(np.ones((7, 3), np.float32) * t, "./LIPD_test/s9/walk1", t) for t in range(4)]
    # inline clouds: the id comes from seq_path, too short for the rule: its last two components
    (root / "LIPD_test.pkl").write_bytes(pickle.dumps(test))
    return root, counts


@pytest.fixture
def babel_dir(tmp_path):
    d = tmp_path / "babel"
    d.mkdir()
    lab = lambda raw, s=None, e=None: {"raw_label": raw, "proc_label": raw, "seg_id": "x",  # noqa: E731
                                        "act_cat": None, **({} if s is None else {"start_t": s, "end_t": e})}
    train = {"1001": {"feat_p": "CMU/CMU/01/01_01_poses.npz", "dur": 2.0, "babel_sid": 1001,
                      "seq_ann": {"labels": [lab("walk and jump")]},
                      "frame_ann": {"labels": [lab("walk", 0.0, 1.0), lab("jump", 1.0, 2.0)]}}}
    val = {"2002": {"feat_p": "CMU/CMU/01/01_02_poses.npz", "dur": 0.5,
                    "seq_ann": {"labels": [lab("stand")]}, "frame_ann": None}}
    (d / "train.json").write_text(json.dumps(train))
    (d / "val.json").write_text(json.dumps(val))
    return d


def test_lipd_sequences_points_imu_joints(lipd_root, tmp_path):
    root, counts = lipd_root
    out = tmp_path / "store"
    summary = lipd.run(_parse(lipd, ["--root", root, "--out", out]))
    json.dumps(summary)
    store = Store(out)
    ids = store.sequence_ids
    assert set(ids) == {"LIPD_train/subj01/seqA", "LIPD_train/subj01/seqB", "CMU/01/01_01_stageii",
                        "CMU/01/01_02_stageii", "LIPD_test/s9/walk1"}
    assert summary["sequences"] == 5 and summary["frames"] == 3 + 2 + 20 + 5 + 4
    a, b = store.read("LIPD_train/subj01/seqA"), store.read("LIPD_train/subj01/seqB")
    assert [len(p) for p in a.points] + [len(p) for p in b.points] == counts
    np.testing.assert_array_equal(a.points[0], np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32))
    np.testing.assert_allclose(a.timestamps, [0.0, 0.1, 0.2])
    assert a.fps == 10 and a.subject == "subj01" and a.scene == a.sequence_id and a.person == 1
    assert a.imu.shape == (3, 4, 12)
    for t in range(3):
        ori, acc = _slot_ori(t), _slot_acc(t)
        for i in range(4):   # slots 0-3 in LIPD_SITES order
            np.testing.assert_allclose(a.imu[t, i, :9], ori[i].reshape(9), rtol=1e-6)
            np.testing.assert_allclose(a.imu[t, i, 9:], acc[i])
        np.testing.assert_allclose(a.joints[t], t)
    assert (a.labels == -1).all() and a.text is None
    inline = store.read("LIPD_test/s9/walk1")
    np.testing.assert_allclose(inline.points[3], 3.0)
    assert store.imu_layout == ImuLayout(sites=LIPD_SITES, channels=("rotmat", "acc"), acc_frame="world",
                                         gravity="removed", world="lipd_smpl_world")
    assert store.joint_names == SMPL_JOINT_NAMES
    assert store.class_names == lipd.BABEL_CLASSES and len(store.class_names) == 29
    assert store.split_schemes() == ["lipd_babel_v1"]
    assert set(store.split("lipd_babel_v1", "train")) == {
        "LIPD_train/subj01/seqA", "LIPD_train/subj01/seqB", "CMU/01/01_01_stageii", "CMU/01/01_02_stageii"}
    assert store.split("lipd_babel_v1", "test") == ["LIPD_test/s9/walk1"]


def test_lipd_all_sites_and_declared_conventions(lipd_root, tmp_path):
    root, _ = lipd_root
    out = tmp_path / "store"
    lipd.run(_parse(lipd, ["--root", root, "--out", out, "--subsets", "LIPD_train", "--all-sites",
                           "--acc-frame", "sensor", "--gravity", "specific_force"]))
    store = Store(out)
    assert store.imu_layout.sites == lipd.SLOTS
    assert (store.imu_layout.acc_frame, store.imu_layout.gravity) == ("sensor", "specific_force")
    seq = store.read("LIPD_train/subj01/seqB")
    for i in range(6):   # the numbers are not converted, only the declaration changes
        np.testing.assert_allclose(seq.imu[1, i, :9], _slot_ori(1)[i].reshape(9), rtol=1e-6)
        np.testing.assert_allclose(seq.imu[1, i, 9:], _slot_acc(1)[i])
    assert len(store) == 2


def test_lipd_babel_labels_text_and_splits(lipd_root, babel_dir, tmp_path):
    root, _ = lipd_root
    out = tmp_path / "store"
    summary = lipd.run(_parse(lipd, ["--root", root, "--babel", babel_dir, "--out", out]))
    assert summary["babel"] == {"matched": 2, "labelled": 2, "length_mismatch": 0, "unmatched": 0}
    store = Store(out)
    seq = store.read("CMU/01/01_01_stageii")
    walk, jump = lipd.BABEL_CLASSES.index("walk"), lipd.BABEL_CLASSES.index("jump")
    assert list(seq.labels) == [walk] * 10 + [jump] * 10
    assert list(seq.text) == ["walk"] * 10 + ["jump"] * 10
    assert seq.attrs["babel_sid"] == "1001" and seq.attrs["babel_status"] == "labelled"
    stand = store.read("CMU/01/01_02_stageii")   # no frame_ann: the sequence label everywhere
    assert list(stand.labels) == [lipd.BABEL_CLASSES.index("stand")] * 5 and set(stand.text) == {"stand"}
    assert store.split_schemes() == ["lipd_babel_v1", "lipd_babel_v2"]
    assert store.split("lipd_babel_v2", "train") == ["CMU/01/01_01_stageii"]
    assert store.split("lipd_babel_v2", "test") == ["CMU/01/01_02_stageii"]
    other = store.read("LIPD_train/subj01/seqA")
    assert (other.labels == -1).all() and other.text is None


def test_lipd_babel_length_mismatch_left_unlabelled(lipd_root, babel_dir, tmp_path):
    root, _ = lipd_root
    data = json.loads((babel_dir / "train.json").read_text())
    data["1001"]["dur"] = 4.0      # 40 frames at 10 fps, the sequence has 20
    (babel_dir / "train.json").write_text(json.dumps(data))
    with pytest.warns(ImporterWarning, match=r"--subset-fps CMU=5"):
        summary = lipd.import_lipd(root, tmp_path / "store", babel_dir=babel_dir, subsets=["CMU"])
    assert summary["babel"]["length_mismatch"] == 1
    seq = Store(tmp_path / "store").read("CMU/01/01_01_stageii")
    assert (seq.labels == -1).all() and seq.attrs["babel_status"] == "length_mismatch"
    # With the rate the warning suggests, frames are 0.2 s apart and the labels fit.
    lipd.import_lipd(root, tmp_path / "store", babel_dir=babel_dir, subsets=["CMU"],
                     subset_fps={"CMU": 5.0}, overwrite=True)
    seq = Store(tmp_path / "store").read("CMU/01/01_01_stageii")
    walk, jump = lipd.BABEL_CLASSES.index("walk"), lipd.BABEL_CLASSES.index("jump")
    assert list(seq.labels) == [walk] * 5 + [jump] * 5 + [-1] * 10


def test_lipd_path_rules_and_babel_paths():
    assert lipd.subject_and_sequence("./a/b/subj/seq/000.bin", "LIPD_test", is_file=True) == ("subj", "seq", False)
    assert lipd.subject_and_sequence("./a/b/c/subj/seq/000.bin", "ACCAD", is_file=True) == ("subj", "seq", False)
    assert lipd.subject_and_sequence("x/subj/seq", "ACCAD", is_file=False) == ("subj", "seq", True)
    assert (lipd.babel_feat_path("ACCAD", "Female1General_c3d", "A1_-_Stand_stageii")
            == "ACCAD/ACCAD/Female1General_c3d/A1 - Stand_poses.npz")
    assert lipd.babel_feat_path("BMLmovi", "Subject_1_F_MoSh", "Subject_1_F_1_stageii") == \
        "BMLmovi/BMLmovi/Subject_1_F_MoSh/Subject_1_F_1_poses.npz"
    assert lipd.babel_feat_path("TC_test", "s1", "acting1_stageii") == "TotalCapture/TotalCapture/s1/acting1_poses.npz"
    assert lipd.babel_feat_path("LIPD_train", "a", "b") is None


def test_lipd_missing_point_file(lipd_root, tmp_path):
    root, _ = lipd_root
    (root / "LIPD_train/pc/subj01/seqB/001.bin").unlink()
    with pytest.raises(ImporterError, match=r"LIPD_train\.pkl.*seqB.*frame 1 .*001\.bin does not exist"):
        lipd.import_lipd(root, tmp_path / "store", subsets=["LIPD_train"])


def test_lipd_bad_imu_ori(tmp_path):
    root = tmp_path / "LIPD"
    root.mkdir()
    frames = [_frame(np.zeros((1, 3), np.float32), "./x/y/z", t) for t in range(3)]
    frames[2]["imu_ori"] = np.zeros((4, 9))
    (root / "DIP_test.pkl").write_bytes(pickle.dumps(frames))
    with pytest.raises(ImporterError, match=r"DIP_test\.pkl.*frame 2 .*'imu_ori' has shape \(4, 9\)"):
        lipd.import_lipd(root, tmp_path / "store")


@pytest.mark.parametrize("payload, match", [({"pc": 1}, "expected a list of per-frame dicts, found dict"),
                                            ([{"seq_path": "a"}, [1, 2]], "item 1 is a list")])
def test_lipd_pickle_not_list_of_dicts(tmp_path, payload, match):
    root = tmp_path / "LIPD"
    root.mkdir()
    (root / "AIST.pkl").write_bytes(pickle.dumps(payload))
    with pytest.raises(ImporterError, match=f"AIST.pkl: {match}"):
        lipd.import_lipd(root, tmp_path / "store")


def test_lipd_no_pickles(tmp_path):
    with pytest.raises(ImporterError, match="no LIPD pickles found"):
        lipd.import_lipd(tmp_path, tmp_path / "store")


# =================================================================================== MSR

def _write_depth(path, depth: np.ndarray) -> None:
    f, h, w = depth.shape
    path.write_bytes(struct.pack("<3I", f, w, h) + depth.astype("<u4").tobytes())


@pytest.fixture
def msr_root(tmp_path):
    root = tmp_path / "msr"
    root.mkdir()
    d1 = np.zeros((3, 6, 8), np.uint32)          # 3 frames of 8 x 6 (W x H)
    d1[0, 1, 2] = 2000                          # row v=1, column u=2, 2 m
    d1[0, 4, 7] = 1500
    d1[2, 3, 4] = 1000                          # frame 1 stays empty
    _write_depth(root / "a02_s01_e01_sdepth.bin", d1)
    d2 = np.zeros((2, 6, 8), np.uint32)
    d2[:, :, :] = 3000                          # every pixel: 48 points per frame
    _write_depth(root / "a05_s07_e02_sdepth.bin", d2)
    return root


def test_msr_backprojection_labels_split(msr_root, tmp_path):
    out = tmp_path / "store"
    summary = msr.run(_parse(msr, ["--root", msr_root, "--out", out]))
    json.dumps(summary)
    store = Store(out)
    assert store.class_names == msr.MSR_CLASSES and len(store.class_names) == 20
    seq = store.read("a02_s01_e01")
    assert [len(p) for p in seq.points] == [2, 0, 1]
    f = 280.0
    np.testing.assert_allclose(seq.points[0][0], [(2 - 4) / f * 2, (1 - 3) / f * 2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(seq.points[0][1], [(7 - 4) / f * 1.5, (4 - 3) / f * 1.5, 1.5], rtol=1e-6)
    np.testing.assert_allclose(seq.points[2][0], [0.0, 0.0, 1.0], atol=1e-7)
    assert list(seq.labels) == [1, 1, 1] and list(seq.text) == ["horizontal arm wave"] * 3
    assert seq.subject == "s01" and seq.fps == 15 and np.allclose(seq.timestamps, [0, 1 / 15, 2 / 15])
    other = store.read("a05_s07_e02")
    assert other.subject == "s07" and (other.labels == 4).all() and len(other.points[0]) == 48
    assert store.split("cross_subject", "train") == ["a02_s01_e01"]
    assert store.split("cross_subject", "test") == ["a05_s07_e02"]


def test_msr_z_up_max_points_fps(msr_root, tmp_path):
    out = tmp_path / "store"
    msr.run(_parse(msr, ["--root", msr_root, "--out", out, "--z-up", "--max-points", "10", "--fps", "30"]))
    store = Store(out)
    seq = store.read("a02_s01_e01")
    f = 280.0
    # camera (x right, y down, z forward) -> x forward, y left, z up
    np.testing.assert_allclose(seq.points[0][0], [2.0, -(2 - 4) / f * 2, -(1 - 3) / f * 2], rtol=1e-6)
    assert seq.fps == 30
    dense = store.read("a05_s07_e02")
    assert [len(p) for p in dense.points] == [10, 10]
    # reproducible subsample: the same seed gives the same points
    again = msr.convert_file(msr_root / "a05_s07_e02_sdepth.bin", z_up=True, max_points=10, fps=30)
    np.testing.assert_array_equal(again.points[1], dense.points[1])


def test_msr_truncated_file(msr_root, tmp_path):
    path = msr_root / "a02_s01_e01_sdepth.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ImporterError, match=r"a02_s01_e01_sdepth\.bin: header says 3 frames of 8x6 pixels, "
                                            r"i\.e\. 588 bytes, but the file has 581 bytes"):
        msr.import_msr(msr_root, tmp_path / "store")


def test_msr_bad_name(tmp_path):
    with pytest.raises(ImporterError, match="action 21 is outside"):
        msr.parse_name("a21_s01_e01_sdepth.bin")


# =================================================================================== BVH

ROOT_CH = "Xposition Yposition Zposition Zrotation Yrotation Xrotation"
ZYX = "Zrotation Yrotation Xrotation"
# name, parent, offset (cm), channels: a LaFAN1-style rig of 22 joints, y up, facing +z, left = +x.
LAFAN = [
    ("Hips", None, (0, 0, 0), ROOT_CH),
    ("LeftUpLeg", "Hips", (10, -5, 0), ZYX), ("LeftLeg", "LeftUpLeg", (0, -40, 0), ZYX),
    ("LeftFoot", "LeftLeg", (0, -40, 0), ZYX), ("LeftToe", "LeftFoot", (0, -5, 12), ZYX),
    ("RightUpLeg", "Hips", (-10, -5, 0), ZYX), ("RightLeg", "RightUpLeg", (0, -40, 0), ZYX),
    ("RightFoot", "RightLeg", (0, -40, 0), ZYX), ("RightToe", "RightFoot", (0, -5, 12), ZYX),
    ("Spine", "Hips", (0, 10, 0), ZYX), ("Spine1", "Spine", (0, 12, 0), ZYX),
    ("Spine2", "Spine1", (0, 12, 0), ZYX), ("Neck", "Spine2", (0, 16, 0), ZYX),
    ("Head", "Neck", (0, 10, 0), ZYX),
    ("LeftShoulder", "Spine2", (5, 12, 0), ZYX), ("LeftArm", "LeftShoulder", (10, 0, 0), ROOT_CH),
    ("LeftForeArm", "LeftArm", (25, 0, 0), "Xrotation Yrotation Zrotation"),
    ("LeftHand", "LeftForeArm", (25, 0, 0), ZYX),
    ("RightShoulder", "Spine2", (-5, 12, 0), ZYX), ("RightArm", "RightShoulder", (-10, 0, 0), ZYX),
    ("RightForeArm", "RightArm", (-25, 0, 0), ZYX), ("RightHand", "RightForeArm", (-25, 0, 0), ZYX),
]
END_SITES = {"Head": (0, 10, 0)}


def make_bvh(rig, frames: dict[int, dict[str, float]], n_frames: int, frame_time=1 / 30,
             root_pos=(0.0, 90.0, 0.0), end_sites=END_SITES) -> str:
    """BVH text for ``rig``; ``frames[f]["Joint.Zrotation"] = degrees`` (or .Xposition, cm)."""
    children = {}
    for name, parent, _, _ in rig:
        children.setdefault(parent, []).append(name)
    spec = {name: (off, ch) for name, _, off, ch in rig}
    order, lines = [], ["HIERARCHY"]

    def emit(name, depth):
        off, ch = spec[name]
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}")
        lines.append(f"{pad}  CHANNELS {len(ch.split())} {ch}")
        order.append(name)
        for c in children.get(name, []):
            emit(c, depth + 1)
        if name in end_sites:
            e = end_sites[name]
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET {e[0]} {e[1]} {e[2]}", pad + "  }"])
        lines.append(pad + "}")

    emit(children[None][0], 0)
    lines += ["MOTION", f"Frames: {n_frames}", f"Frame Time: {frame_time:.8f}"]
    for f in range(n_frames):
        row = []
        for name in order:
            off, ch = spec[name]
            for c in ch.split():
                default = 0.0
                if c.endswith("position"):
                    default = root_pos["XYZ".index(c[0])] if name == order[0] else off["XYZ".index(c[0])]
                row.append(frames.get(f, {}).get(f"{name}.{c}", default))
        lines.append(" ".join(f"{v:.6f}" for v in row))
    return "\n".join(lines) + "\n"


# Frame 1: 90 deg elbow bend; frame 2: root moved and turned 90 deg about y; frame 3: left hip
# flexed 90 deg, LeftArm's position channel moved to 12 cm, right forearm Rz(90) @ Ry(90).
LAFAN_FRAMES = {
    1: {"LeftForeArm.Zrotation": 90.0},
    2: {"Hips.Xposition": 100.0, "Hips.Zposition": 50.0, "Hips.Yrotation": 90.0},
    3: {"LeftUpLeg.Xrotation": -90.0, "LeftArm.Xposition": 12.0,
        "RightForeArm.Zrotation": 90.0, "RightForeArm.Yrotation": 90.0},
}


@pytest.fixture
def lafan_motion():
    return bvh_format.parse_bvh(make_bvh(LAFAN, LAFAN_FRAMES, 4), "lafan.bvh")


def to_ours(p_cm) -> np.ndarray:
    """Native y-up cm -> x forward (= z), y left (= x), z up (= y), metres."""
    x, y, z = p_cm
    return np.array([z, x, y]) / 100.0


def test_bvh_parse(lafan_motion):
    m = lafan_motion
    assert len(m.joints) == 22 and m.num_frames == 4 and m.fps == pytest.approx(30)
    assert m.joints[m.names.index("LeftArm")].channels[:3] == ("Xposition", "Yposition", "Zposition")
    assert len(m.end_sites) == 1 and m.values.shape == (4, 6 + 6 + 20 * 3)


def test_bvh_forward_kinematics_by_hand(lafan_motion):
    pos, rot = lafan_motion.forward_kinematics()
    J = {n: i for i, n in enumerate(lafan_motion.names)}
    # frame 0: offsets chained from the root at (0, 90, 0)
    np.testing.assert_allclose(pos[0, J["LeftForeArm"]], [40, 136, 0], atol=1e-9)
    np.testing.assert_allclose(pos[0, J["LeftFoot"]], [10, 5, 0], atol=1e-9)
    # frame 1: the forearm (25 cm along +x) turned by Rz(90) points up: wrist 25 cm above the elbow
    np.testing.assert_allclose(pos[1, J["LeftHand"]], [40, 161, 0], atol=1e-9)
    np.testing.assert_allclose(rot[1, J["LeftHand"]], rot_z(np.pi / 2), atol=1e-12)
    # frame 2: root at (100, 90, 50), Ry(90) takes the hip offset (10, -5, 0) to (0, -5, -10)
    np.testing.assert_allclose(pos[2, J["LeftUpLeg"]], [100, 85, 40], atol=1e-9)
    # frame 3: Rx(-90) swings the thigh forward (+z); the shin follows
    np.testing.assert_allclose(pos[3, J["LeftLeg"]], [10, 85, 40], atol=1e-9)
    np.testing.assert_allclose(pos[3, J["LeftFoot"]], [10, 85, 80], atol=1e-9)
    # position channels replace the offset: LeftArm 12 cm from LeftShoulder (5, 136, 0)
    np.testing.assert_allclose(pos[3, J["LeftArm"]], [17, 136, 0], atol=1e-9)
    # channel order Z Y X means Rz @ Ry: Ry(90) takes (-25, 0, 0) to (0, 0, 25), Rz keeps it
    np.testing.assert_allclose(pos[3, J["RightHand"]], [-40, 136, 25], atol=1e-9)
    np.testing.assert_allclose(rot[3, J["RightForeArm"]], rot_z(np.pi / 2) @ rot_y(np.pi / 2), atol=1e-12)


def test_bvh_mapping_lafan(lafan_motion):
    mapping = bvh_rig.map_joints(lafan_motion)
    d = mapping.describe()
    assert d["pelvis"] == "Hips" and d["left_hip"] == "LeftUpLeg" and d["left_knee"] == "LeftLeg"
    assert d["left_ankle"] == "LeftFoot" and d["left_foot"] == "LeftToe"
    assert (d["spine1"], d["spine2"], d["spine3"]) == ("Spine", "Spine1", "Spine2")
    assert d["left_collar"] == "LeftShoulder" and d["left_shoulder"] == "LeftArm"
    assert d["left_elbow"] == "LeftForeArm" and d["left_wrist"] == "LeftHand"
    assert d["neck"] == "Neck" and d["head"] == "Head"
    assert mapping.derived == ["left_hand", "right_hand"]
    assert d["left_hand"].startswith("derived")


def test_bvh_to_kinematics_units_axes_derived(lafan_motion):
    kin = bvh_rig.bvh_to_kinematics(lafan_motion)
    assert isinstance(kin, Kinematics)
    S = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    assert kin.positions.shape == (4, 24, 3) and kin.rotations.shape == (4, 24, 3, 3)
    np.testing.assert_allclose(kin.times, np.arange(4) / 30)
    np.testing.assert_allclose(kin.positions[1, S["left_elbow"]], to_ours([40, 136, 0]), atol=1e-9)
    np.testing.assert_allclose(kin.positions[1, S["left_wrist"]], to_ours([40, 161, 0]), atol=1e-9)
    # derived hand: 8 cm beyond the wrist along the forearm at rest, riding on the wrist's frame
    np.testing.assert_allclose(kin.positions[0, S["left_hand"]], to_ours([73, 136, 0]), atol=1e-9)
    np.testing.assert_allclose(kin.positions[1, S["left_hand"]], to_ours([40, 169, 0]), atol=1e-9)
    np.testing.assert_allclose(kin.rotations[1, S["left_hand"]], kin.rotations[1, S["left_wrist"]])
    np.testing.assert_allclose(kin.positions[3, S["left_ankle"]], to_ours([10, 85, 80]), atol=1e-9)
    # z is up: the head is the highest joint and the pelvis sits at 0.9 m
    assert kin.positions[0, :, 2].argmax() == S["head"]
    np.testing.assert_allclose(kin.positions[0, S["pelvis"]], [0, 0, 0.9], atol=1e-12)
    # rotations are proper (their convention: test_deepmimic's procedural-rest-frame test)
    for r in kin.rotations.reshape(-1, 3, 3):
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(r) == pytest.approx(1.0)
    # explicit scale and z-up keep native axes
    kin2 = bvh_rig.bvh_to_kinematics(lafan_motion, unit_scale=0.02, up_axis="z")
    np.testing.assert_allclose(kin2.positions[1, S["left_wrist"]], np.array([40, 161, 0]) * 0.02, atol=1e-9)


def test_bvh_metre_rig_autoscale():
    rig_m = [(n, p, tuple(v / 100 for v in off), ch) for n, p, off, ch in LAFAN]
    frames = {f: {k: (v / 100 if k.endswith("position") else v) for k, v in d.items()}
              for f, d in LAFAN_FRAMES.items()}
    text = make_bvh(rig_m, frames, 4, root_pos=(0.0, 0.9, 0.0), end_sites={"Head": (0, 0.1, 0)})
    m = bvh_format.parse_bvh(text, "metres.bvh")
    assert bvh_rig.resolve_unit_scale(m) == 1.0
    ref = bvh_rig.bvh_to_kinematics(bvh_format.parse_bvh(make_bvh(LAFAN, LAFAN_FRAMES, 4), "cm.bvh"))
    np.testing.assert_allclose(bvh_rig.bvh_to_kinematics(m).positions, ref.positions, atol=1e-6)


def _rename(rig, names: dict[str, str]):
    return [(names.get(n, n), names.get(p, p) if p else None, off, ch) for n, p, off, ch in rig]


def test_bvh_mapping_mixamo_with_fingers():
    rig = _rename(LAFAN, {"LeftToe": "LeftToeBase", "RightToe": "RightToeBase"})
    rig += [("LeftHandIndex1", "LeftHand", (9, 0, 1), ZYX)]
    rig = [("mixamorig:" + n, "mixamorig:" + p if p else None, off, ch) for n, p, off, ch in rig]
    m = bvh_format.parse_bvh(make_bvh(rig, {}, 2, end_sites={"mixamorig:Head": (0, 10, 0)}), "mixamo.bvh")
    d = bvh_rig.map_joints(m).describe()
    assert d["left_hand"] == "mixamorig:LeftHandIndex1" and d["right_hand"].startswith("derived")
    assert d["left_foot"] == "mixamorig:LeftToeBase" and d["left_shoulder"] == "mixamorig:LeftArm"


def test_bvh_mapping_cmu_style():
    rig = [
        ("Hips", None, (0, 0, 0), ROOT_CH), ("LHipJoint", "Hips", (0, 0, 0), ZYX),
        ("LeftUpLeg", "LHipJoint", (10, -5, 0), ZYX), ("LeftLeg", "LeftUpLeg", (0, -40, 0), ZYX),
        ("LeftFoot", "LeftLeg", (0, -40, 0), ZYX), ("LeftToeBase", "LeftFoot", (0, -5, 12), ZYX),
        ("RHipJoint", "Hips", (0, 0, 0), ZYX), ("RightUpLeg", "RHipJoint", (-10, -5, 0), ZYX),
        ("RightLeg", "RightUpLeg", (0, -40, 0), ZYX), ("RightFoot", "RightLeg", (0, -40, 0), ZYX),
        ("LowerBack", "Hips", (0, 0, 0), ZYX), ("Spine", "LowerBack", (0, 20, 0), ZYX),
        ("Spine1", "Spine", (0, 20, 0), ZYX), ("Neck", "Spine1", (0, 0, 0), ZYX),
        ("Neck1", "Neck", (0, 8, 0), ZYX), ("Head", "Neck1", (0, 8, 0), ZYX),
        ("LeftShoulder", "Spine1", (0, 0, 0), ZYX), ("LeftArm", "LeftShoulder", (15, 0, 0), ZYX),
        ("LeftForeArm", "LeftArm", (25, 0, 0), ZYX), ("LeftHand", "LeftForeArm", (25, 0, 0), ZYX),
        ("LeftFingerBase", "LeftHand", (5, 0, 0), ZYX), ("LeftHandIndex1", "LeftFingerBase", (4, 0, 0), ZYX),
        ("RightShoulder", "Spine1", (0, 0, 0), ZYX), ("RightArm", "RightShoulder", (-15, 0, 0), ZYX),
        ("RightForeArm", "RightArm", (-25, 0, 0), ZYX), ("RightHand", "RightForeArm", (-25, 0, 0), ZYX),
    ]
    m = bvh_format.parse_bvh(make_bvh(rig, {}, 2, end_sites={}), "cmu.bvh")
    mapping = bvh_rig.map_joints(m)
    d = mapping.describe()
    assert d["left_hip"] == "LeftUpLeg" and d["left_foot"] == "LeftToeBase"
    assert d["right_foot"].startswith("derived")
    assert d["left_hand"] == "LeftHandIndex1" and d["neck"] == "Neck"
    # the zero-length clavicle would put the collar on the neck: mid-clavicle instead
    assert d["left_collar"].startswith("derived: middle of LeftShoulder -> LeftArm")
    # LowerBack (zero length at the hips) and Spine1 (where Neck sits) leave one spine joint,
    # at 50 % of pelvis -> neck: spine2; spine1 and spine3 are derived on that line.
    assert d["spine2"] == "Spine" and d["spine1"].startswith("derived") and d["spine3"].startswith("derived")
    kin = bvh_rig.bvh_to_kinematics(m)
    S = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    z = kin.positions[0, :, 2]
    assert z[S["pelvis"]] < z[S["spine1"]] < z[S["spine2"]] < z[S["spine3"]] < z[S["neck"]] < z[S["head"]]
    # derived right foot: 12 cm ahead (+x) of and 5 cm below the ankle
    np.testing.assert_allclose(kin.positions[0, S["right_foot"]] - kin.positions[0, S["right_ankle"]],
                               [0.12, 0, -0.05], atol=1e-9)
    np.testing.assert_allclose(kin.positions[0, S["left_collar"]],
                               0.5 * (kin.positions[0, S["neck"]] + kin.positions[0, S["left_shoulder"]]), atol=1e-9)
    # the collar rides on the clavicle: raising the clavicle moves it
    lifted = bvh_rig.bvh_to_kinematics(bvh_format.parse_bvh(make_bvh(rig, {0: {"LeftShoulder.Zrotation": 30.0}}, 1,
                                                          end_sites={}), "cmu.bvh"))
    c = lifted.positions[0, S["left_collar"]] - lifted.positions[0, S["neck"]]
    np.testing.assert_allclose(c, [0, 0.075 * np.cos(np.pi / 6), 0.075 * np.sin(np.pi / 6)], atol=1e-9)
    rest = bvh_rig.bvh_to_kinematics(m)
    # ... and turns its frame with it: 30 deg about the rig's z, which is the world's forward x
    np.testing.assert_allclose(lifted.rotations[0, S["left_collar"]] @ rest.rotations[0, S["left_collar"]].T,
                               rot_x(np.pi / 6), atol=1e-9)


def test_bvh_missing_core_joint():
    rig = _rename(LAFAN, {"LeftLeg": "Thing"})
    m = bvh_format.parse_bvh(make_bvh(rig, {}, 2), "broken.bvh")
    with pytest.raises(ImporterError, match=r"broken\.bvh: cannot find the core joint\(s\) \['left_knee'\].*'Thing'"):
        bvh_rig.bvh_to_kinematics(m)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("Frames: 4", "Frames: 5"), "header says 5 frames, the file has 4 motion rows"),
    (lambda t: t.replace("CHANNELS 3 Zrotation Yrotation Xrotation", "CHANNELS 3 Zrotation Yrotation Wrotation", 1),
     "unknown channel 'Wrotation'"),
    (lambda t: t[: t.rindex("\n", 0, -1)] + "\n1 2 3\n", r"line \d+ \(frame 3\): 3 values, the hierarchy declares 72"),
    (lambda t: t.replace("MOTION", "}\nMOTION"), r"'}' closes nothing"),
])
def test_bvh_parse_errors(edit, match):
    with pytest.raises(ImporterError, match=match):
        bvh_format.parse_bvh(edit(make_bvh(LAFAN, LAFAN_FRAMES, 4)), "bad.bvh")


def test_bvh_import_round_trip_with_labels(tmp_path):
    a, b = tmp_path / "walk01.bvh", tmp_path / "jump01.bvh"
    a.write_text(make_bvh(LAFAN, LAFAN_FRAMES, 4, frame_time=0.1))
    b.write_text(make_bvh(LAFAN, {}, 3, frame_time=0.05))
    labels = tmp_path / "labels.csv"
    labels.write_text("file,start_s,end_s,label\nwalk01.bvh,0.0,0.2,walk\nwalk01.bvh,0.2,1.0,turn\n")
    out = tmp_path / "store"
    summary = bvh.run(_parse(bvh, [a, b, "--out", out, "--labels", labels]))
    json.dumps(summary)
    store = Store(out)
    assert store.class_names == ("turn", "walk") and store.joint_names == SMPL_JOINT_NAMES
    assert store.imu_layout is None
    seq = store.read("walk01")
    assert seq.modalities == ("joints",) and seq.fps == pytest.approx(10) and seq.subject == "walk01"
    assert list(seq.labels) == [1, 1, 0, 0] and list(seq.text) == ["walk", "walk", "turn", "turn"]
    kin = bvh_rig.bvh_to_kinematics(bvh_format.load_bvh(a))
    np.testing.assert_allclose(seq.joints, kin.positions.astype(np.float32))
    other = store.read("jump01")
    assert (other.labels == -1).all() and other.text is None and other.num_frames == 3
    assert summary["mappings"]["walk01"]["left_wrist"] == "LeftHand"
    # without labels: one class, "unlabelled"
    bvh.import_bvh([b], out, subject="p1", overwrite=True)
    store = Store(out)
    assert store.class_names == ("unlabelled",) and store.read("jump01").subject == "p1"
