"""Body kinematics: the one thing every sensor model of the synthetic world consumes.

Procedural motion and BVH mocap both produce :class:`Kinematics`; the LiDAR, IMU and skeleton
outputs are all derived from it, so the modalities agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from despite_core.data.store import SMPL_JOINT_NAMES

# Parent of each SMPL joint (-1 = root), in SMPL_JOINT_NAMES order.
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


@dataclass
class Kinematics:
    """Motion of one body in the world frame (z up, metres), sampled at ``times``.

    ``positions`` (N, 24, 3): SMPL joint positions in SMPL_JOINT_NAMES order.
    ``rotations`` (N, 24, 3, 3): global orientation of each joint's frame (joint-to-world); the
    bone from a joint to its child is rigid in that frame, so a sensor strapped to the bone moves
    with it. Rest-pose axes are rig-specific: only relative motion is meaningful.
    """

    times: np.ndarray
    positions: np.ndarray
    rotations: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.times)
        j = len(SMPL_JOINT_NAMES)
        if self.positions.shape != (n, j, 3) or self.rotations.shape != (n, j, 3, 3):
            raise ValueError(f"Kinematics expects positions ({n}, {j}, 3) and rotations ({n}, {j}, 3, 3), "
                             f"got {self.positions.shape} and {self.rotations.shape}")

    @property
    def rate(self) -> float:
        """Sample rate in Hz (from the median step)."""
        return 1.0 / float(np.median(np.diff(self.times)))


# The frame convention every source of Kinematics follows (procedural bodies by construction, mocap by
# bvh_rig.bvh_to_kinematics): in the rest pose, standing upright facing +x with the limbs hanging, every
# joint frame is world-aligned (x forward, y left, z up). So a sensor strapped to a bone reads the same axes
# whatever drives the body. Each joint's bone points to its primary child (PRIMARY_CHILD); the procedural
# body's rest directions come from body.BodyShape.offsets through rest_bone_directions.
PRIMARY_CHILD = {j: SMPL_PARENTS.index(j) for j in range(24) if j in SMPL_PARENTS}
PRIMARY_CHILD[0] = SMPL_JOINT_NAMES.index("spine1")
PRIMARY_CHILD[SMPL_JOINT_NAMES.index("spine3")] = SMPL_JOINT_NAMES.index("neck")


def rest_bone_directions(offsets: np.ndarray) -> np.ndarray:
    """(24, 3) unit direction from each joint to its primary child in a rest pose given by joint offsets
    from the parent (24, 3); a joint without a child gets its parent's direction; a zero-length bone
    (a rig whose joint and child coincide at rest) gets zeros, which minimal_rotation turns into no turn."""
    out = np.zeros((24, 3))
    for j in range(24):
        k = j
        while k not in PRIMARY_CHILD:
            k = SMPL_PARENTS[k]
        v = offsets[PRIMARY_CHILD[k]]
        n = float(np.linalg.norm(v))
        out[j] = v / n if n > 1e-9 else 0.0
    return out


def minimal_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the smallest rotation taking unit vectors a (..., 3) onto b (..., 3)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    v = np.cross(a, b)
    c = np.einsum("...i,...i->...", a, b)
    k = np.zeros(a.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    opposite = c < -1 + 1e-9
    out = np.eye(3) + k + (k @ k) / np.where(opposite, 1.0, 1.0 + c)[..., None, None]
    if np.any(opposite):   # a half turn about any axis perpendicular to a
        aa = a[opposite]
        p = np.where(np.abs(aa[:, :1]) < 0.9, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
        n = np.cross(aa, p)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        out[opposite] = 2 * n[:, :, None] * n[:, None, :] - np.eye(3)
    return out
