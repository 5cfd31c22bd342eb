"""DeepMimic ``humanoid3d`` motion clips as BVH text, so that they drive the synthetic world (`--bvh`).

DeepMimic (Peng et al., SIGGRAPH 2018) stores retargeted motion capture as JSON: ``{"Loop": ...,
"Frames": [[duration, root position (3), root rotation (w, x, y, z), chest, neck, right hip (4
each), right knee (1, radians), right ankle, right shoulder (4 each), right elbow (1), left hip,
left knee, left ankle, left shoulder, left elbow]]}``: 44 numbers per frame, y up, the character
facing +x, its left at -z, lengths in metres. pybullet's wheel ships such clips
(``pybullet_data/data/motions/humanoid3d_*.txt``, zlib licence) beside the rig they are played on
(``pybullet_data/humanoid/humanoid.urdf``), whose joint offsets, in the URDF's units, are
:data:`HUMANOID3D_OFFSETS` (scaled by :data:`HUMANOID3D_SCALE`, the scale pybullet plays it at).

The BVH written here uses LaFAN1's joint names (so :func:`bvh_rig.map_joints` maps it to SMPL
without options), metres, y up, the rig facing +z with its left at +x (the BVH convention that
``--up-axis y`` expects). Rotations are the clip's own, conjugated into that frame; the knees and
elbows turn about their hinge axis (the joint's z); the head and wrists are fixed end joints.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from despite_core.data.importers.common import ImporterError
from despite_core.data.rotations import quat_to_matrix

HUMANOID3D_SCALE = 0.25   # pybullet's deep_mimic env loads humanoid.urdf with globalScaling 0.25
# joint: (parent, offset from the parent joint in the URDF frame (x forward, y up, z right), DeepMimic dofs)
HUMANOID3D_OFFSETS: dict[str, tuple[str | None, tuple[float, float, float], int]] = {
    "root": (None, (0.0, 0.0, 0.0), 0),
    "chest": ("root", (0.0, 0.944604, 0.0), 4),
    "neck": ("chest", (0.0, 0.895576, 0.0), 4),
    "head": ("neck", (0.0, 0.700000, 0.0), 0),          # the centre of the neck link's sphere
    "right_hip": ("root", (0.0, 0.0, 0.339548), 4),
    "right_knee": ("right_hip", (0.0, -1.686184, 0.0), 1),
    "right_ankle": ("right_knee", (0.0, -1.639480, 0.0), 4),
    "right_shoulder": ("chest", (-0.096200, 0.974000, 0.732440), 4),
    "right_elbow": ("right_shoulder", (0.0, -1.099152, 0.0), 1),
    "right_wrist": ("right_elbow", (0.0, -1.035788, 0.0), 0),
    "left_hip": ("root", (0.0, 0.0, -0.339548), 4),
    "left_knee": ("left_hip", (0.0, -1.686184, 0.0), 1),
    "left_ankle": ("left_knee", (0.0, -1.639480, 0.0), 4),
    "left_shoulder": ("chest", (-0.096200, 0.974000, -0.732440), 4),
    "left_elbow": ("left_shoulder", (0.0, -1.099152, 0.0), 1),
    "left_wrist": ("left_elbow", (0.0, -1.035788, 0.0), 0),
}
# The order of the joints' values in a DeepMimic frame, after duration, root position and root rotation.
FRAME_ORDER = ("chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder", "right_elbow",
               "left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow")
FRAME_WIDTH = 1 + 3 + 4 + sum(HUMANOID3D_OFFSETS[j][2] for j in FRAME_ORDER)   # 44
BVH_NAMES = {"root": "Hips", "chest": "Spine", "neck": "Neck", "head": "Head",
             "right_hip": "RightUpLeg", "right_knee": "RightLeg", "right_ankle": "RightFoot",
             "right_shoulder": "RightArm", "right_elbow": "RightForeArm", "right_wrist": "RightHand",
             "left_hip": "LeftUpLeg", "left_knee": "LeftLeg", "left_ankle": "LeftFoot",
             "left_shoulder": "LeftArm", "left_elbow": "LeftForeArm", "left_wrist": "LeftHand"}
# DeepMimic frame (x forward, y up, z right) -> BVH frame (x left, y up, z forward): a proper rotation.
TO_BVH = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


@dataclass
class DeepMimicClip:
    """One clip: per-frame durations (N,), root positions (N, 3) and local joint rotations."""

    name: str
    loop: str                               # "wrap" (cyclic) or "none"
    durations: np.ndarray                   # (N,) s
    root: np.ndarray                        # (N, 3) m, DeepMimic frame
    rotations: dict[str, np.ndarray]        # joint -> (N, 3, 3) local rotation, DeepMimic frame

    @property
    def frame_time(self) -> float:
        """The clip's frame period (its median frame duration)."""
        return float(np.median(self.durations[:-1] if len(self.durations) > 1 else self.durations))


def _hinge(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    m = np.zeros((len(angle), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1.0
    return m


def load_deepmimic(path: str | Path) -> DeepMimicClip:
    """Parse a DeepMimic humanoid3d motion file; errors name the file and the bad frame."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ImporterError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ImporterError(f"{path}: not a DeepMimic motion file (JSON: {e.msg} at line {e.lineno})") from None
    frames = doc.get("Frames") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or len(frames) < 2:
        raise ImporterError(f"{path}: a DeepMimic motion needs a 'Frames' list of at least 2 frames")
    for i, f in enumerate(frames):
        if not isinstance(f, list) or len(f) != FRAME_WIDTH:
            raise ImporterError(f"{path}: frame {i} has {len(f) if isinstance(f, list) else type(f).__name__} "
                                f"values; a humanoid3d frame has {FRAME_WIDTH}")
    try:
        a = np.asarray(frames, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next(i for i, f in enumerate(frames) if not all(isinstance(v, (int, float)) for v in f))
        raise ImporterError(f"{path}: frame {bad} has a value that is not a number") from None
    if not np.all(np.isfinite(a)):
        raise ImporterError(f"{path}: non-finite values in frame {int(np.argmax(~np.isfinite(a).all(axis=1)))}")
    if np.any(a[:-1, 0] <= 0):
        raise ImporterError(f"{path}: frame {int(np.argmax(a[:-1, 0] <= 0))} has a duration <= 0")
    rot = {"root": quat_to_matrix(a[:, 4:8])}
    col = 8
    for joint in FRAME_ORDER:
        dofs = HUMANOID3D_OFFSETS[joint][2]
        v = a[:, col:col + dofs]
        rot[joint] = quat_to_matrix(v) if dofs == 4 else _hinge(v[:, 0])
        col += dofs
    return DeepMimicClip(name=path.stem, loop=str(doc.get("Loop", "none")), durations=a[:, 0],
                         root=a[:, 1:4].copy(), rotations=rot)


def _euler_zyx(m: np.ndarray) -> np.ndarray:
    """(N, 3, 3) -> (N, 3) degrees (z, y, x) with m = Rz @ Ry @ Rx (BVH ``Zrotation Yrotation Xrotation``)."""
    y = np.arcsin(np.clip(-m[:, 2, 0], -1.0, 1.0))
    z = np.arctan2(m[:, 1, 0], m[:, 0, 0])
    x = np.arctan2(m[:, 2, 1], m[:, 2, 2])
    lock = np.abs(m[:, 2, 0]) > 1 - 1e-9          # gimbal lock: put the whole turn about z
    z = np.where(lock, np.arctan2(-m[:, 0, 1], m[:, 1, 1]), z)
    x = np.where(lock, 0.0, x)
    return np.degrees(np.stack([z, y, x], axis=1))


def clip_to_bvh(clip: DeepMimicClip, *, hold_start_s: float = 0.0, hold_end_s: float = 0.0,
                in_place: bool = False) -> str:
    """BVH text of ``clip`` (see the module docstring); its first / last pose held for the given seconds;
    ``in_place``: the root's horizontal travel removed (the body turns and bobs where it starts; feet slide)."""
    n = len(clip.durations)
    dt = clip.frame_time
    idx = np.r_[np.zeros(int(round(hold_start_s / dt)), int), np.arange(n),
                np.full(int(round(hold_end_s / dt)), n - 1)]
    children: dict[str | None, list[str]] = {}
    for joint, (parent, _, _) in HUMANOID3D_OFFSETS.items():
        children.setdefault(parent, []).append(joint)
    lines = ["HIERARCHY"]
    channel_joints: list[str] = []

    def emit(joint: str, depth: int) -> None:
        pad = "  " * depth
        off = TO_BVH @ (np.asarray(HUMANOID3D_OFFSETS[joint][1]) * HUMANOID3D_SCALE)
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {BVH_NAMES[joint]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        pos = "Xposition Yposition Zposition " if depth == 0 else ""
        lines.append(f"{pad}  CHANNELS {6 if depth == 0 else 3} {pos}Zrotation Yrotation Xrotation")
        channel_joints.append(joint)
        kids = children.get(joint, [])
        for kid in kids:
            emit(kid, depth + 1)
        if not kids:
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET 0.000000 {-0.05 if 'ankle' in joint else 0.05:.6f} 0.000000")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    emit("root", 0)
    root = clip.root[idx].copy()
    if in_place:
        root[:, [0, 2]] = clip.root[0, [0, 2]]
    cols = [(TO_BVH @ root.T).T]
    eye = np.broadcast_to(np.eye(3), (len(idx), 3, 3))
    for joint in channel_joints:
        r = clip.rotations.get(joint)
        r = eye if r is None else r[idx]
        cols.append(_euler_zyx(TO_BVH @ r @ TO_BVH.T))
    motion = np.concatenate(cols, axis=1)
    lines += ["MOTION", f"Frames: {len(idx)}", f"Frame Time: {dt:.6f}"]
    lines += [" ".join(f"{v:.5f}" for v in row) for row in motion]
    return "\n".join(lines) + "\n"
