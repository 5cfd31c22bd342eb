"""Procedural bodies: an SMPL-style 24-joint skeleton with varied size and proportions, forward
kinematics from joint angles, and the capsule surface the LiDAR model casts rays against.

Body frame: x forward, y left, z up, metres. Joint angles (rad) follow the body's own axes:
flexion = rotation in the sagittal plane (positive moves a hanging limb forward), abduction =
sideways away from the body, spine pitch positive = lean forward.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from despite_core.data.rotations import align_z_to, rot_x, rot_y, rot_z
from despite_core.data.store import SMPL_JOINT_NAMES
from despite_core.data.synth.kinematics import SMPL_PARENTS, Kinematics

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}

# Pose channels produced by the motion generators (angles in rad, dz in m).
POSE_CHANNELS = (
    "dz", "pelvis_pitch", "pelvis_roll", "spine_pitch", "spine_roll", "spine_yaw", "neck_pitch",
    "l_hip_flex", "l_hip_abd", "l_knee", "l_ankle", "r_hip_flex", "r_hip_abd", "r_knee", "r_ankle",
    "l_sh_flex", "l_sh_abd", "l_sh_rot", "l_elbow", "r_sh_flex", "r_sh_abd", "r_sh_rot", "r_elbow",
)
CH = {name: i for i, name in enumerate(POSE_CHANNELS)}


@dataclass(frozen=True)
class BodyShape:
    """Size and proportions of one synthetic subject (adult stature 1.5-2.0 m, SENSORS.md)."""

    height: float = 1.75
    leg_ratio: float = 1.0       # leg length relative to stature
    arm_ratio: float = 1.0
    shoulder_width: float = 1.0
    hip_width: float = 1.0
    girth: float = 1.0           # scales every limb radius

    @classmethod
    def random(cls, rng: np.random.Generator, variation: float = 1.0) -> "BodyShape":
        v = variation
        return cls(
            height=float(np.clip(rng.normal(1.72, 0.10 * max(v, 0.1)), 1.5, 2.0)),
            leg_ratio=float(1 + rng.uniform(-0.06, 0.06) * v),
            arm_ratio=float(1 + rng.uniform(-0.06, 0.06) * v),
            shoulder_width=float(1 + rng.uniform(-0.12, 0.12) * v),
            hip_width=float(1 + rng.uniform(-0.12, 0.12) * v),
            girth=float(1 + rng.uniform(-0.15, 0.30) * v),
        )

    def offsets(self) -> np.ndarray:
        """Rest-pose offset of each joint from its parent (24, 3), body frame, metres.

        Rest pose: standing upright, arms hanging, figures for a 1.75 m adult scaled by stature.
        """
        s = self.height / 1.75
        leg, arm = s * self.leg_ratio, s * self.arm_ratio
        sw, hw = self.shoulder_width, self.hip_width
        o = np.zeros((24, 3))
        o[J["left_hip"]] = (0, 0.09 * hw * s, -0.07 * s)
        o[J["right_hip"]] = (0, -0.09 * hw * s, -0.07 * s)
        o[J["spine1"]] = (-0.01 * s, 0, 0.10 * s)
        o[J["left_knee"]] = o[J["right_knee"]] = (0, 0, -0.42 * leg)
        o[J["spine2"]] = (0, 0, 0.13 * s)
        o[J["left_ankle"]] = o[J["right_ankle"]] = (0, 0, -0.41 * leg)
        o[J["spine3"]] = (0.01 * s, 0, 0.06 * s)
        o[J["left_foot"]] = o[J["right_foot"]] = (0.13 * s, 0, -0.05 * s)
        o[J["neck"]] = (0, 0, 0.22 * s)
        o[J["left_collar"]] = (0, 0.07 * sw * s, 0.17 * s)
        o[J["right_collar"]] = (0, -0.07 * sw * s, 0.17 * s)
        o[J["head"]] = (0.02 * s, 0, 0.10 * s)
        o[J["left_shoulder"]] = (0, 0.11 * sw * s, -0.02 * s)
        o[J["right_shoulder"]] = (0, -0.11 * sw * s, -0.02 * s)
        o[J["left_elbow"]] = o[J["right_elbow"]] = (0, 0, -0.28 * arm)
        o[J["left_wrist"]] = o[J["right_wrist"]] = (0, 0, -0.25 * arm)
        o[J["left_hand"]] = o[J["right_hand"]] = (0, 0, -0.08 * arm)
        return o

    @property
    def pelvis_height(self) -> float:
        """Pelvis height above the floor when standing (ankle joint 6 cm above the floor)."""
        o = self.offsets()
        return float(-(o[J["left_hip"], 2] + o[J["left_knee"], 2] + o[J["left_ankle"], 2]) + 0.06 * self.height / 1.75)


def local_rotations(pose: np.ndarray) -> np.ndarray:
    """Joint-local rotations (N, 24, 3, 3) from pose channels (N, len(POSE_CHANNELS))."""
    n = pose.shape[0]
    p = {name: pose[:, i] for name, i in CH.items()}
    r = np.broadcast_to(np.eye(3), (n, 24, 3, 3)).copy()
    r[:, J["pelvis"]] = rot_y(p["pelvis_pitch"]) @ rot_x(p["pelvis_roll"])
    spine = rot_y(p["spine_pitch"] / 3) @ rot_x(p["spine_roll"] / 3) @ rot_z(p["spine_yaw"] / 3)
    for name in ("spine1", "spine2", "spine3"):
        r[:, J[name]] = spine
    r[:, J["neck"]] = rot_y(p["neck_pitch"])
    for side, sign in (("l", 1.0), ("r", -1.0)):
        full = "left" if side == "l" else "right"
        r[:, J[f"{full}_hip"]] = rot_y(-p[f"{side}_hip_flex"]) @ rot_x(sign * p[f"{side}_hip_abd"])
        r[:, J[f"{full}_knee"]] = rot_y(p[f"{side}_knee"])
        r[:, J[f"{full}_ankle"]] = rot_y(-p[f"{side}_ankle"])
        r[:, J[f"{full}_shoulder"]] = (rot_y(-p[f"{side}_sh_flex"]) @ rot_x(sign * p[f"{side}_sh_abd"])
                                       @ rot_z(sign * p[f"{side}_sh_rot"]))
        r[:, J[f"{full}_elbow"]] = rot_y(-p[f"{side}_elbow"])
    return r


def forward_kinematics(shape: BodyShape, pose: np.ndarray, root_xy: np.ndarray, heading: np.ndarray,
                       times: np.ndarray) -> Kinematics:
    """World kinematics from pose channels (N, C), root position on the floor (N, 2) and heading (N,).

    The pelvis sits at the shape's standing height plus the ``dz`` channel.
    """
    offsets = shape.offsets()
    local = local_rotations(pose)
    n = pose.shape[0]
    glob = np.empty((n, 24, 3, 3))
    pos = np.empty((n, 24, 3))
    glob[:, 0] = rot_z(heading) @ local[:, 0]
    pos[:, 0, 0] = root_xy[:, 0]
    pos[:, 0, 1] = root_xy[:, 1]
    pos[:, 0, 2] = shape.pelvis_height + pose[:, CH["dz"]]
    for j in range(1, 24):
        parent = SMPL_PARENTS[j]
        pos[:, j] = pos[:, parent] + glob[:, parent] @ offsets[j]
        glob[:, j] = glob[:, parent] @ local[:, j]
    return Kinematics(times=np.asarray(times, np.float64), positions=pos, rotations=glob)


# ------------------------------------------------------------------ body surface
# Capsules between joints: (joint a, joint b, radius in m for girth 1). Head: from the head joint
# up along the neck->head direction. Figures are typical adult limb radii.
CAPSULES = (
    ("left_hip", "right_hip", 0.10), ("pelvis", "spine3", 0.13), ("spine2", "neck", 0.12),
    ("left_shoulder", "right_shoulder", 0.065), ("neck", "head", 0.05), ("head", "head_top", 0.095),
    ("left_shoulder", "left_elbow", 0.048), ("right_shoulder", "right_elbow", 0.048),
    ("left_elbow", "left_wrist", 0.038), ("right_elbow", "right_wrist", 0.038),
    ("left_wrist", "left_hand", 0.033), ("right_wrist", "right_hand", 0.033),
    ("left_hip", "left_knee", 0.072), ("right_hip", "right_knee", 0.072),
    ("left_knee", "left_ankle", 0.052), ("right_knee", "right_ankle", 0.052),
    ("left_ankle", "left_foot", 0.045), ("right_ankle", "right_foot", 0.045),
)


def capsule_endpoints(positions: np.ndarray, girth: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Capsule segments of a posed body: a (N, C, 3), b (N, C, 3) and radii (C,)."""
    p = positions
    neck, head = p[..., J["neck"], :], p[..., J["head"], :]
    d = head - neck
    top = head + 0.12 * d / np.linalg.norm(d, axis=-1, keepdims=True).clip(min=1e-6)
    ext = {"head_top": top}
    a = np.stack([ext[x] if x in ext else p[..., J[x], :] for x, _, _ in CAPSULES], axis=-2)
    b = np.stack([ext[y] if y in ext else p[..., J[y], :] for _, y, _ in CAPSULES], axis=-2)
    radii = np.array([r for _, _, r in CAPSULES]) * girth
    return a, b, radii


def distance_to_capsules(points: np.ndarray, a: np.ndarray, b: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Signed distance (M,) of points (M, 3) to the union of capsules (C segments a->b, radii)."""
    ab = b - a                                                   # (C, 3)
    ap = points[:, None, :] - a[None]                            # (M, C, 3)
    u = np.clip(np.sum(ap * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0, 1)
    closest = a[None] + u[..., None] * ab[None]
    return np.min(np.linalg.norm(points[:, None, :] - closest, axis=-1) - radii[None], axis=1)


class CapsuleMesh:
    """Triangle meshes of a body's capsules, re-posed per frame by moving template vertices.

    Each capsule's template is built once along +z from 0 to its rest length (hemispherical caps);
    posing rotates +z onto the bone and translates to joint a. Capsule lengths follow the posed
    joints, so proportions from BVH rigs are honoured too.
    """

    def __init__(self, radii: np.ndarray, segments: int = 10, rings: int = 4) -> None:
        self.radii = np.asarray(radii, np.float64)
        # A unit-length template: a cylinder part whose z is stretched per frame, and two caps.
        verts, tris, stretch = [], [], []
        ang = np.linspace(0, 2 * np.pi, segments, endpoint=False)
        circle = np.stack([np.cos(ang), np.sin(ang)], -1)
        # Rings from the bottom pole to the top pole: bottom cap (z <= 0), top cap (z >= 1).
        ring_defs = []
        for k in range(rings, 0, -1):            # bottom cap
            phi = k / rings * (np.pi / 2)
            ring_defs.append((np.cos(phi), -np.sin(phi), 0.0))
        ring_defs.append((1.0, 0.0, 0.0))
        ring_defs.append((1.0, 0.0, 1.0))
        for k in range(1, rings + 1):            # top cap
            phi = k / rings * (np.pi / 2)
            ring_defs.append((np.cos(phi), np.sin(phi), 1.0))
        verts.append([0, 0, -1.0]); stretch.append(0.0)          # bottom pole (unit radius)
        for rad, dz, sz in ring_defs:
            for c in circle:
                verts.append([rad * c[0], rad * c[1], dz]); stretch.append(sz)
        verts.append([0, 0, 1.0]); stretch.append(1.0)           # top pole
        nr = len(ring_defs)
        for i in range(segments):                # bottom fan
            tris.append([0, 1 + (i + 1) % segments, 1 + i])
        for r in range(nr - 1):
            for i in range(segments):
                a0, a1 = 1 + r * segments + i, 1 + r * segments + (i + 1) % segments
                b0, b1 = a0 + segments, a1 + segments
                tris.append([a0, a1, b1]); tris.append([a0, b1, b0])
        top = len(verts) - 1
        base = 1 + (nr - 1) * segments
        for i in range(segments):
            tris.append([top, base + i, base + (i + 1) % segments])
        self._unit = np.asarray(verts)           # (V, 3): xy and the cap z offset scale with the radius
        self._stretch = np.asarray(stretch)      # (V,): 1 where z follows the bone length
        self._tris = np.asarray(tris, np.int32)
        c = len(self.radii)
        v = len(self._unit)
        self.triangles = (self._tris[None] + (np.arange(c) * v)[:, None, None]).reshape(-1, 3).astype(np.uint32)
        self.triangle_capsule = np.repeat(np.arange(c), len(self._tris))
        self.vertices_per_capsule = v

    def pose(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """World vertices (C*V, 3) float32 for capsules from a (C, 3) to b (C, 3)."""
        d = b - a
        length = np.linalg.norm(d, axis=-1).clip(min=1e-6)         # (C,)
        rot = align_z_to(d / length[:, None])                      # (C, 3, 3)
        local = np.empty((len(self.radii),) + self._unit.shape)    # (C, V, 3)
        local[..., :2] = self._unit[None, :, :2] * self.radii[:, None, None]
        # z = (0 or the bone length) + the cap's own offset, which scales with the radius.
        local[..., 2] = self._stretch[None] * length[:, None] + self._unit[None, :, 2] * self.radii[:, None]
        world = np.einsum("cij,cvj->cvi", rot, local) + a[:, None, :]
        return world.reshape(-1, 3).astype(np.float32)
