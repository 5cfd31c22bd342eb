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
