"""DeepMimic humanoid3d clips as BVH (despite_core.data.importers.deepmimic), and the BVH rig's frame convention."""
import json

import numpy as np
import pytest

from despite_core.data.importers.bvh_format import load_bvh
from despite_core.data.importers.bvh_rig import bvh_to_kinematics
from despite_core.data.importers.common import ImporterError
from despite_core.data.importers.deepmimic import (
    FRAME_ORDER, FRAME_WIDTH, HUMANOID3D_OFFSETS, HUMANOID3D_SCALE, clip_to_bvh, load_deepmimic,
)
from despite_core.data.rotations import quat_to_matrix
from despite_core.data.store import SMPL_JOINT_NAMES as N


def _random_frames(rng, n=12):
    """n DeepMimic frames with random joint rotations, hinge angles and a travelling root."""
    frames = []
    for f in range(n):
        row = [1 / 30, 0.1 * f, 0.85 + 0.02 * np.sin(f), -0.05 * f]
        q = rng.normal(size=4)
        row += list(q / np.linalg.norm(q))
        for joint in FRAME_ORDER:
            if HUMANOID3D_OFFSETS[joint][2] == 4:
                q = np.r_[2.0, rng.normal(size=3)]   # moderate turns
                row += list(q / np.linalg.norm(q))
            else:
                row.append(float(rng.uniform(-1.5, 0.0)))
        frames.append(row)
    return frames


def _deepmimic_fk(path):
    """Joint positions by DeepMimic's own rule, in its frame (x forward, y up, z right): g = g_parent @ local."""
    a = np.asarray(json.loads(path.read_text())["Frames"])
    local = {"root": quat_to_matrix(a[:, 4:8])}
    col = 8
    for joint in FRAME_ORDER:
        if HUMANOID3D_OFFSETS[joint][2] == 4:
            local[joint] = quat_to_matrix(a[:, col:col + 4])
            col += 4
        else:
            c, s = np.cos(a[:, col]), np.sin(a[:, col])
            m = np.zeros((len(a), 3, 3))
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1
            local[joint] = m
            col += 1
    g, p = {}, {}
    for joint, (parent, off, _) in HUMANOID3D_OFFSETS.items():
        r = local.get(joint, np.broadcast_to(np.eye(3), (len(a), 3, 3)))
        if parent is None:
            g[joint], p[joint] = r, a[:, 1:4]
        else:
            p[joint] = p[parent] + np.einsum("fij,j->fi", g[parent], np.asarray(off) * HUMANOID3D_SCALE)
            g[joint] = g[parent] @ r
    return p


def test_the_bvh_of_a_clip_puts_every_joint_where_deepmimic_does(tmp_path):
    src = tmp_path / "humanoid3d_test.txt"
    src.write_text(json.dumps({"Loop": "wrap", "Frames": _random_frames(np.random.default_rng(3))}))
    (tmp_path / "clip.bvh").write_text(clip_to_bvh(load_deepmimic(src)))
    kin = bvh_to_kinematics(load_bvh(tmp_path / "clip.bvh"))      # metres, z up, x forward, y left
    want = _deepmimic_fk(src)
    world = {j: np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1) for j, v in want.items()}
    for smpl, dm in (("pelvis", "root"), ("neck", "neck"), ("head", "head"), ("left_hip", "left_hip"),
                     ("left_knee", "left_knee"), ("right_ankle", "right_ankle"),
                     ("right_shoulder", "right_shoulder"), ("left_elbow", "left_elbow"),
                     ("left_wrist", "left_wrist"), ("right_wrist", "right_wrist")):
        assert np.abs(kin.positions[:, N.index(smpl)] - world[dm]).max() < 1e-4, smpl
    assert kin.times[1] == pytest.approx(1 / 30, abs=1e-6)


def test_held_poses_lengthen_the_clip_by_the_seconds_asked(tmp_path):
    (tmp_path / "c.txt").write_text(json.dumps({"Loop": "none", "Frames": _random_frames(np.random.default_rng(0), 10)}))
    (tmp_path / "c.bvh").write_text(clip_to_bvh(load_deepmimic(tmp_path / "c.txt"), hold_start_s=1.0, hold_end_s=0.5))
    kin = bvh_to_kinematics(load_bvh(tmp_path / "c.bvh"))
    assert len(kin.times) == 10 + 30 + 15
    assert np.abs(kin.positions[:30] - kin.positions[0]).max() < 1e-9        # the first pose, held 1 s
    assert np.abs(kin.positions[-15:] - kin.positions[-1]).max() < 1e-9      # the last, held 0.5 s
    assert np.abs(kin.positions[30] - kin.positions[31]).max() > 1e-3         # then the clip moves


def test_bad_deepmimic_files_are_refused_naming_the_frame(tmp_path):
    frames = _random_frames(np.random.default_rng(1), n=4)
    short = [list(f) for f in frames]
    short[2] = short[2][:-1]
    for doc, msg in (({"Frames": short}, f"frame 2 has {FRAME_WIDTH - 1} values"),
                     ({"Frames": frames[:1]}, "at least 2 frames"),
                     ([1, 2], "'Frames' list")):
        p = tmp_path / "bad.txt"
        p.write_text(json.dumps(doc))
        with pytest.raises(ImporterError, match=msg):
            load_deepmimic(p)
    (tmp_path / "junk.txt").write_text("{not json")
    with pytest.raises(ImporterError, match="not a DeepMimic motion file"):
        load_deepmimic(tmp_path / "junk.txt")


def test_a_mocap_bone_hanging_down_has_the_procedural_rest_frame_whatever_the_rigs_rest_pose(tmp_path):
    """The simulated IMUs read the bone's frame: a T-pose rig whose arm is lowered to hang must give the
    forearm the frame a procedural body has at rest (world-aligned), or its IMUs read other axes."""
    from test_importers import LAFAN, make_bvh

    # LAFAN's test rig rests in a T-pose (left arm along +x); -90 deg about z lowers the left arm to hang.
    frames = {0: {"LeftArm.Zrotation": -90.0}, 1: {"LeftArm.Zrotation": -90.0}}
    (tmp_path / "t.bvh").write_text(make_bvh(LAFAN, frames, 2))
    kin = bvh_to_kinematics(load_bvh(tmp_path / "t.bvh"))
    elbow, wrist = N.index("left_elbow"), N.index("left_wrist")
    bone = kin.positions[0, wrist] - kin.positions[0, elbow]
    assert bone / np.linalg.norm(bone) == pytest.approx([0, 0, -1], abs=1e-6)     # it hangs
    assert kin.rotations[0, elbow] == pytest.approx(np.eye(3), abs=1e-6)
    assert kin.rotations[0, N.index("left_shoulder")] == pytest.approx(np.eye(3), abs=1e-6)
    for j in ("left_knee", "right_hip", "right_knee"):   # hanging legs are the procedural rest as well
        assert kin.rotations[0, N.index(j)] == pytest.approx(np.eye(3), abs=1e-6), j
    # an upright trunk: within the procedural spine's own slight lean (0.1 rad)
    assert np.trace(kin.rotations[0, 0]) > 1 + 2 * np.cos(0.11)


def test_in_place_keeps_the_root_where_it_starts_and_the_pose_as_it_was(tmp_path):
    (tmp_path / "c.txt").write_text(json.dumps({"Loop": "wrap", "Frames": _random_frames(np.random.default_rng(2))}))
    clip = load_deepmimic(tmp_path / "c.txt")
    (tmp_path / "a.bvh").write_text(clip_to_bvh(clip))
    (tmp_path / "b.bvh").write_text(clip_to_bvh(clip, in_place=True))
    a, b = (bvh_to_kinematics(load_bvh(tmp_path / f"{x}.bvh")) for x in "ab")
    assert np.ptp(a.positions[:, 0, :2], axis=0).max() > 0.5                       # the clip travels
    assert np.ptp(b.positions[:, 0, :2], axis=0).max() < 1e-5                      # in place it does not
    np.testing.assert_allclose(b.positions[:, 0, 2], a.positions[:, 0, 2], atol=1e-5)   # it still bobs
    rel = lambda k: k.positions - k.positions[:, :1]                                # noqa: E731
    np.testing.assert_allclose(rel(b), rel(a), atol=1e-4)                          # the same pose


def _frame(root_quat=(1, 0, 0, 0), right_knee=0.0):
    """One humanoid3d frame: identity joints, the given root rotation and right knee angle."""
    row = [1 / 30, 0.0, 0.9, 0.0, *root_quat]
    for joint in FRAME_ORDER:
        row += [right_knee if joint == "right_knee" else 0.0] if HUMANOID3D_OFFSETS[joint][2] == 1 else [1, 0, 0, 0]
    return row


def test_a_bent_knee_puts_the_shin_behind_and_a_quarter_turn_faces_left(tmp_path):
    """Hand-worked poses, independent of the module's own rotation code: DeepMimic's knee bends about its
    z (the body's right), so -90 deg sends the shin straight back; a quarter turn about up faces the body's
    left (world +y), which puts its left hip behind it (world -x)."""
    shin = 1.639480 * HUMANOID3D_SCALE
    c = np.cos(np.pi / 4)
    frames = [_frame(right_knee=-np.pi / 2), _frame(root_quat=(c, 0, c, 0))]
    (tmp_path / "p.txt").write_text(json.dumps({"Loop": "none", "Frames": frames}))
    (tmp_path / "p.bvh").write_text(clip_to_bvh(load_deepmimic(tmp_path / "p.txt")))
    kin = bvh_to_kinematics(load_bvh(tmp_path / "p.bvh"))
    knee, ankle = kin.positions[0, N.index("right_knee")], kin.positions[0, N.index("right_ankle")]
    np.testing.assert_allclose(ankle - knee, [-shin, 0, 0], atol=1e-5)
    hip = kin.positions[1, N.index("left_hip")] - kin.positions[1, 0]
    np.testing.assert_allclose(hip, [-0.339548 * HUMANOID3D_SCALE, 0, 0], atol=1e-5)


def test_a_value_that_is_not_a_number_names_the_frame(tmp_path):
    frames = _random_frames(np.random.default_rng(4), n=3)
    frames[1][7] = "x"
    (tmp_path / "s.txt").write_text(json.dumps({"Frames": frames}))
    with pytest.raises(ImporterError, match="frame 1 has a value that is not a number"):
        load_deepmimic(tmp_path / "s.txt")


def test_a_rig_with_a_zero_length_bone_still_converts(tmp_path):
    from test_importers import LAFAN, make_bvh

    rig = [(n, p, (0, 0, 0) if n == "LeftArm" else off, ch) for n, p, off, ch in LAFAN]   # arm on the collar
    (tmp_path / "z.bvh").write_text(make_bvh(rig, {}, 2))
    kin = bvh_to_kinematics(load_bvh(tmp_path / "z.bvh"))
    assert np.all(np.isfinite(kin.rotations)) and np.all(np.isfinite(kin.positions))
