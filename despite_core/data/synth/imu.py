"""Body-worn IMU model: orientation, angular rate and specific force derived from the body's
kinematics, with the error sources of consumer MEMS parts (figures from shared/SENSORS.md).

Conventions (shared/ARCHITECTURE.md, fixed): orientation = sensor frame in a gravity-aligned z-up
world whose heading is random per wearer; angular velocity (rad/s) and acceleration (m/s^2,
including the reaction to gravity: +9.81 along world up at rest) in the sensor frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from despite_core.data.imu_layout import LIPD_SITES, ImuLayout
from despite_core.data.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quat, rot_z
from despite_core.data.synth.body import J
from despite_core.data.synth.kinematics import Kinematics

GRAVITY = 9.80665
# site -> (joint whose frame carries the sensor, joint at the far end of the bone, fraction along it)
SITES: dict[str, tuple[str, str, float]] = {
    "left_forearm": ("left_elbow", "left_wrist", 0.6),
    "right_forearm": ("right_elbow", "right_wrist", 0.6),
    "left_lower_leg": ("left_knee", "left_ankle", 0.45),
    "right_lower_leg": ("right_knee", "right_ankle", 0.45),
    "head": ("head", "head", 0.0),
    "pelvis": ("pelvis", "spine1", 0.3),
    "left_upper_arm": ("left_shoulder", "left_elbow", 0.5),
    "right_upper_arm": ("right_shoulder", "right_elbow", 0.5),
    "left_thigh": ("left_hip", "left_knee", 0.5),
    "right_thigh": ("right_hip", "right_knee", 0.5),
}


@dataclass(frozen=True)
class ImuConfig:
    """IMU rate, sites and error model at difficulty 1 (the world scales the errors by difficulty)."""

    rate: float = 100.0
    sites: tuple[str, ...] = LIPD_SITES
    acc_noise_density: float = 150e-6 * GRAVITY        # m/s^2/sqrt(Hz): 150 ug/sqrt(Hz)
    acc_bias: float = 3e-3 * GRAVITY                   # m/s^2, 1 sigma turn-on bias: 3 mg
    acc_bias_walk: float = 2e-4                        # m/s^2/sqrt(s)
    gyro_noise_density: float = np.deg2rad(0.01)       # rad/s/sqrt(Hz): 0.01 deg/s/sqrt(Hz)
    gyro_bias: float = np.deg2rad(0.1)                 # rad/s, residual turn-on bias after calibration
    gyro_bias_walk: float = np.deg2rad(10.0 / 3600)    # rad/s/sqrt(s): bias instability ~10 deg/h
    orientation_walk: float = np.deg2rad(0.05)         # rad/sqrt(s): drift of the fusion filter
    orientation_offset: float = np.deg2rad(0.5)        # rad, constant tilt/heading error of the filter

    def __post_init__(self) -> None:
        unknown = [s for s in self.sites if s not in SITES]
        if unknown:
            raise ValueError(f"unknown IMU sites {unknown}; known: {sorted(SITES)}")
        if self.rate <= 0:
            raise ValueError(f"IMU rate must be positive, got {self.rate}")

    def scaled(self, k: float) -> "ImuConfig":
        """The same IMU with every error source multiplied by ``k`` (0 = ideal sensor)."""
        names = ("acc_noise_density", "acc_bias", "acc_bias_walk", "gyro_noise_density", "gyro_bias",
                 "gyro_bias_walk", "orientation_walk", "orientation_offset")
        kw = {n: getattr(self, n) * k for n in names}
        return ImuConfig(rate=self.rate, sites=self.sites, **kw)


STORE_LAYOUT_CHANNELS = ("rotmat", "acc", "gyro")


def store_layout(sites: tuple[str, ...]) -> ImuLayout:
    """The layout the synthetic world writes: per site rotmat(9) + acc(3) + gyro(3)."""
    return ImuLayout(sites=sites, channels=STORE_LAYOUT_CHANNELS, acc_frame="sensor",
                     gravity="specific_force", world="z_up_arbitrary_heading")


@dataclass
class ImuStream:
    """Readings of one wearer's IMUs: times (N,), orientation (N, S, 3, 3) sensor-to-world,
    gyro (N, S, 3) rad/s and acc (N, S, 3) m/s^2 in the sensor frame."""

    times: np.ndarray
    orientation: np.ndarray
    gyro: np.ndarray
    acc: np.ndarray
    sites: tuple[str, ...]

    @property
    def quat(self) -> np.ndarray:
        """Orientation as (N, S, 4) quaternions (w, x, y, z)."""
        return matrix_to_quat(self.orientation)

    def as_layout(self) -> np.ndarray:
        """(N, S, 15) in :func:`store_layout` order."""
        n, s = self.acc.shape[:2]
        return np.concatenate([self.orientation.reshape(n, s, 9), self.acc, self.gyro], axis=-1).astype(np.float32)


def _random_walk(rng: np.random.Generator, n: int, dt: float, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.cumsum(rng.normal(0.0, sigma * np.sqrt(dt), size=(n,) + shape), axis=0)


def sensor_poses(kin: Kinematics, sites: tuple[str, ...], mounts: np.ndarray,
                 surface_offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True sensor positions (N, S, 3) and sensor-to-world rotations (N, S, 3, 3) in the LiDAR world."""
    pos, rot = [], []
    for k, site in enumerate(sites):
        j, child, frac = SITES[site]
        rj = kin.rotations[:, J[j]]
        p = kin.positions[:, J[j]] + frac * (kin.positions[:, J[child]] - kin.positions[:, J[j]])
        pos.append(p + rj @ surface_offset[k])
        rot.append(rj @ mounts[k])
    return np.stack(pos, 1), np.stack(rot, 1)


def simulate_imu(kin: Kinematics, config: ImuConfig, rng: np.random.Generator,
                 heading: float | None = None) -> tuple[ImuStream, ImuStream]:
    """IMU readings from kinematics sampled at the IMU rate.

    Returns (measured, ideal): ``ideal`` has no sensor errors and the LiDAR world's heading, so
    tests can check it against the kinematics; ``measured`` adds the errors and the wearer's
    random world heading (``heading`` rad, drawn when None).
    """
    times = kin.times
    n = len(times)
    if n < 3:
        raise ValueError("IMU simulation needs at least 3 kinematic samples")
    dt = float(np.median(np.diff(times)))
    if abs(1.0 / dt - config.rate) > 1e-3 * config.rate:
        raise ValueError(f"kinematics sampled at {1 / dt:.2f} Hz, IMU rate is {config.rate} Hz")
    s = len(config.sites)
    # Each wearer straps the sensors on a little differently: random yaw about the bone, small tilt.
    mounts = axis_angle_to_matrix(np.concatenate([rng.normal(0, 0.08, (s, 2)), rng.uniform(-0.5, 0.5, (s, 1))], 1))
    surface = np.stack([np.array([0.05, 0.0, 0.0]) for _ in range(s)])
    pos, rot = sensor_poses(kin, config.sites, mounts, surface)
    # Angular rate by central differences of orientation: w = log(R(t-dt)^T R(t+dt)) / (2 dt).
    rel = np.empty((n, s, 3, 3))
    rel[1:-1] = np.swapaxes(rot[:-2], -1, -2) @ rot[2:]
    rel[0] = np.swapaxes(rot[0], -1, -2) @ rot[1]
    rel[-1] = np.swapaxes(rot[-2], -1, -2) @ rot[-1]
    span = np.full((n, 1, 1), 2 * dt)
    span[0] = span[-1] = dt
    gyro = matrix_to_axis_angle(rel) / span
    # Specific force: R^T (a + g_up); a by second differences of the sensor position.
    vel = np.gradient(pos, dt, axis=0)
    acc_world = np.gradient(vel, dt, axis=0)
    acc_world[..., 2] += GRAVITY
    acc = np.einsum("nsji,nsj->nsi", rot, acc_world)
    ideal = ImuStream(times, rot, gyro, acc, tuple(config.sites))

    c = config
    fs = 1.0 / dt
    acc_m = (acc + rng.normal(0, c.acc_bias, (1, s, 3)) + _random_walk(rng, n, dt, c.acc_bias_walk, (s, 3))
             + rng.normal(0, c.acc_noise_density * np.sqrt(fs), (n, s, 3)))
    gyro_m = (gyro + rng.normal(0, c.gyro_bias, (1, s, 3)) + _random_walk(rng, n, dt, c.gyro_bias_walk, (s, 3))
              + rng.normal(0, c.gyro_noise_density * np.sqrt(fs), (n, s, 3)))
    err = axis_angle_to_matrix(rng.normal(0, c.orientation_offset, (1, s, 3))
                               + _random_walk(rng, n, dt, c.orientation_walk, (s, 3)))
    psi = float(rng.uniform(-np.pi, np.pi)) if heading is None else heading
    orient_m = rot_z(np.array(psi)) @ rot @ err
    measured = ImuStream(times, orient_m, gyro_m, acc_m, tuple(config.sites))
    return measured, ideal
