"""The declared IMU layout of a sequence store or a model bundle.

Every store and bundle says what its IMU tensor holds: the sites in order, the channel groups per
site in order, and the conventions of each group. Readers compare layouts and refuse a mismatch
instead of reinterpreting numbers silently (shared/ARCHITECTURE.md, "Conventions").
numpy-only: used by the ROS runtime too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Channel groups and their widths. Conventions (fixed):
#   rotmat  sensor-to-world rotation, 3x3 flattened row-major (R[0,0], R[0,1], ..., R[2,2])
#   quat    sensor-to-world rotation as a unit quaternion (w, x, y, z)
#   acc     acceleration in m/s^2 (frame and gravity handling declared by the layout)
#   gyro    angular rate in rad/s, sensor frame
CHANNEL_WIDTHS: dict[str, int] = {"rotmat": 9, "quat": 4, "acc": 3, "gyro": 3}
ORIENTATION_GROUPS = ("rotmat", "quat")

ACC_FRAMES = ("sensor", "world")
# specific_force: what an accelerometer measures; a sensor at rest reads +9.81 m/s^2 along world up.
# removed: gravity subtracted (linear acceleration only).
GRAVITY_CONVENTIONS = ("specific_force", "removed")

LIPD_SITES = ("left_forearm", "right_forearm", "left_lower_leg", "right_lower_leg")


class ImuLayoutError(ValueError):
    """An IMU layout is malformed, or two layouts disagree."""


@dataclass(frozen=True)
class ImuLayout:
    """What one IMU frame of shape (sites, width) holds.

    ``world``: the orientation's reference frame. ``z_up_arbitrary_heading`` (our convention and
    sensor_msgs/Imu's in practice): gravity-aligned, z up, heading arbitrary per wearer.
    """

    sites: tuple[str, ...] = LIPD_SITES
    channels: tuple[str, ...] = ("rotmat", "acc")
    acc_frame: str = "sensor"
    gravity: str = "specific_force"
    world: str = "z_up_arbitrary_heading"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(self.sites))
        object.__setattr__(self, "channels", tuple(self.channels))
        if not self.sites:
            raise ImuLayoutError("IMU layout declares no sites")
        if len(set(self.sites)) != len(self.sites):
            raise ImuLayoutError(f"IMU layout lists a site twice: {list(self.sites)}")
        if not self.channels:
            raise ImuLayoutError("IMU layout declares no channels")
        for name in self.channels:
            if name not in CHANNEL_WIDTHS:
                raise ImuLayoutError(
                    f"unknown IMU channel {name!r}; known channels: {sorted(CHANNEL_WIDTHS)}")
        if len(set(self.channels)) != len(self.channels):
            raise ImuLayoutError(f"IMU layout lists a channel twice: {list(self.channels)}")
        if self.acc_frame not in ACC_FRAMES:
            raise ImuLayoutError(f"acc_frame {self.acc_frame!r} is not one of {ACC_FRAMES}")
        if self.gravity not in GRAVITY_CONVENTIONS:
            raise ImuLayoutError(f"gravity {self.gravity!r} is not one of {GRAVITY_CONVENTIONS}")

    @property
    def width(self) -> int:
        """Numbers per site per frame."""
        return sum(CHANNEL_WIDTHS[c] for c in self.channels)

    @property
    def flat_width(self) -> int:
        """Numbers per frame when sites are flattened (the encoder's input width)."""
        return self.width * len(self.sites)

    def slice(self, channel: str) -> slice:
        """Where ``channel`` lies within one site's ``width`` numbers."""
        if channel not in self.channels:
            raise ImuLayoutError(f"IMU layout has no channel {channel!r}; it has {list(self.channels)}")
        start = 0
        for c in self.channels:
            if c == channel:
                return slice(start, start + CHANNEL_WIDTHS[c])
            start += CHANNEL_WIDTHS[c]
        raise AssertionError("unreachable")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "sites": list(self.sites), "channels": list(self.channels),
            "acc_frame": self.acc_frame, "gravity": self.gravity, "world": self.world,
            "rotmat": "sensor_to_world, row-major", "quat": "sensor_to_world, (w, x, y, z)",
            "units": {"acc": "m/s^2", "gyro": "rad/s"},
        }
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImuLayout":
        known = {"sites", "channels", "acc_frame", "gravity", "world", "extra"}
        informative = {"rotmat", "quat", "units"}
        unknown = set(d) - known - informative
        if unknown:
            raise ImuLayoutError(f"unknown IMU layout keys {sorted(unknown)}; known: {sorted(known)}")
        for key in ("sites", "channels"):
            if key not in d:
                raise ImuLayoutError(f"IMU layout lacks {key!r}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def check_compatible(self, other: "ImuLayout", what: str = "IMU layout") -> None:
        """Raise unless ``other`` declares exactly the same numbers in the same order."""
        for name in ("sites", "channels", "acc_frame", "gravity", "world"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                raise ImuLayoutError(f"{what} mismatch in {name}: expected {a}, got {b}")

    def select(self, imu: np.ndarray, source: "ImuLayout") -> np.ndarray:
        """Pick this layout's sites and channels out of ``imu`` laid out as ``source``.

        ``imu``: (..., len(source.sites), source.width). Orientation groups convert between
        rotmat and quat when the target asks for the other; every other difference (frames,
        gravity convention, missing sites or channels) is an error, never guessed.
        """
        from despite_core.data.rotations import matrix_to_quat, quat_to_matrix

        for name in ("acc_frame", "gravity", "world"):
            if getattr(self, name) != getattr(source, name):
                raise ImuLayoutError(
                    f"IMU {name} differs: wanted {getattr(self, name)!r}, data has "
                    f"{getattr(source, name)!r}; convert the data in its importer")
        if imu.shape[-2:] != (len(source.sites), source.width):
            raise ImuLayoutError(
                f"IMU array of shape {imu.shape} does not match its layout "
                f"({len(source.sites)} sites x {source.width} channels)")
        missing = [s for s in self.sites if s not in source.sites]
        if missing:
            raise ImuLayoutError(f"IMU data lacks sites {missing}; it has {list(source.sites)}")
        site_idx = [source.sites.index(s) for s in self.sites]
        per_site = imu[..., site_idx, :]
        parts = []
        for ch in self.channels:
            if ch in source.channels:
                parts.append(per_site[..., source.slice(ch)])
            elif ch == "quat" and "rotmat" in source.channels:
                r = per_site[..., source.slice("rotmat")]
                parts.append(matrix_to_quat(r.reshape(*r.shape[:-1], 3, 3)).astype(imu.dtype))
            elif ch == "rotmat" and "quat" in source.channels:
                m = quat_to_matrix(per_site[..., source.slice("quat")])
                parts.append(m.reshape(*m.shape[:-2], 9).astype(imu.dtype))
            else:
                raise ImuLayoutError(
                    f"IMU data lacks channel {ch!r}; it has {list(source.channels)}")
        return np.concatenate(parts, axis=-1)
