"""Spinning-LiDAR model: rays cast against the room (floor, walls, furniture) and the people.

The static room is cast once per scene; each scan then casts only the rays whose direction can
reach a person (their azimuth/elevation window) against the posed bodies, and keeps the nearer of
the two hits, so people occlude each other and furniture occludes people. Every person is posed at
the instant the sweep passes them (``t`` field), to the resolution of the kinematics (10 ms).
Output fields follow shared/ARCHITECTURE.md: x, y, z, intensity, ring, t, gt_person.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from despite_core.data.rotations import rot_x, rot_y, rot_z

try:  # open3d's ray caster (Embree); imported lazily so despite_core stays light to import
    import open3d as o3d
except ImportError as _e:  # pragma: no cover - exercised only on broken installs
    o3d = None
    _O3D_ERROR = _e


def _require_open3d():
    if o3d is None:
        raise ImportError(f"the synthetic LiDAR needs open3d ({_O3D_ERROR}); on Debian also install libusb-1.0-0")
    return o3d


@dataclass(frozen=True)
class LidarConfig:
    """A spinning LiDAR. Vertical FOV defaults by beam count: 16 beams as a Velodyne VLP-16
    (+-15 deg), otherwise as an Ouster OS1 (+-22.5 deg uniform) (shared/SENSORS.md)."""

    beams: int = 64
    columns: int = 1024
    rate: float = 10.0                        # Hz (scans per second)
    fov_up: float | None = None               # deg
    fov_down: float | None = None             # deg
    range_noise: float = 0.02                 # m, 1 sigma at difficulty 1 (datasheets: 1.5-5 cm)
    dropout: float = 0.02                     # probability that a return is missing (no echo)
    min_range: float = 0.3
    max_range: float = 60.0
    mount_xyz: tuple[float, float, float] = (0.3, 0.0, 1.6)
    mount_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)   # rad, sensor-to-world roll/pitch/yaw

    def __post_init__(self) -> None:
        if self.beams not in (16, 32, 64, 128):
            raise ValueError(f"beams must be 16, 32, 64 or 128, got {self.beams}")
        if self.columns < 64:
            raise ValueError(f"columns must be >= 64, got {self.columns}")
        if self.rate not in (10.0, 20.0) and not (1.0 <= self.rate <= 40.0):
            raise ValueError(f"rate must be 1-40 Hz (10 or 20 typical), got {self.rate}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be within [0, 1), got {self.dropout}")
        if self.range_noise < 0 or self.max_range <= self.min_range:
            raise ValueError(f"need range_noise >= 0 and max_range > min_range ({self.min_range} m)")
        up, down = self.fov
        if not -90 < down < up < 90:
            raise ValueError(f"vertical field of view must satisfy -90 < down < up < 90 deg, got up {up}, down {down}")

    @property
    def fov(self) -> tuple[float, float]:
        up = self.fov_up if self.fov_up is not None else (15.0 if self.beams == 16 else 22.5)
        down = self.fov_down if self.fov_down is not None else -up
        return up, down

    @property
    def elevations(self) -> np.ndarray:
        """Beam elevation angles (rad), ring 0 = lowest beam."""
        up, down = self.fov
        return np.deg2rad(np.linspace(down, up, self.beams))

    @property
    def azimuths(self) -> np.ndarray:
        """Column azimuths (rad) in firing order: a counter-clockwise turn starting behind the sensor."""
        return -np.pi + 2 * np.pi * np.arange(self.columns) / self.columns

    @property
    def mount_rotation(self) -> np.ndarray:
        r, p, y = self.mount_rpy
        return rot_z(np.array(y)) @ rot_y(np.array(p)) @ rot_x(np.array(r))

    def directions(self) -> np.ndarray:
        """Unit ray directions in the sensor frame (beams, columns, 3)."""
        el = self.elevations[:, None]
        az = self.azimuths[None, :]
        return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), -1)


@dataclass
class Room:
    """A box room with furniture, world frame (x forward from the sensor's wall, z up)."""

    length: float = 10.0           # along x
    width: float = 8.0             # along y, centred on y = 0
    height: float = 3.0
    boxes: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)  # (min, max, reflectivity)

    @classmethod
    def random(cls, rng: np.random.Generator, difficulty: float = 1.0, min_length: float = 0.0,
               tall_objects: int = 0) -> "Room":
        """A random room. ``tall_objects``: extra free-standing things of a person's size (cabinets,
        lockers, coat stands, floor lamps, drawn after everything else so a seed's room is otherwise
        unchanged): the look-alikes a person detector must reject."""
        length = max(float(rng.uniform(8.0, 10.0 + 6.0 * min(difficulty, 1.5))), min_length)
        width = float(rng.uniform(7.0, 10.0))
        room = cls(length=length, width=width, height=float(rng.uniform(2.6, 3.4)))
        # Furniture along the side walls (cabinets, shelves) and a few free-standing obstacles
        # (tables, pillars) that can hide a person's legs or whole body.
        for _ in range(int(rng.integers(2, 5))):
            side = rng.choice([-1, 1])
            x0 = rng.uniform(1.0, length - 2.0)
            depth, w, h = rng.uniform(0.4, 0.7), rng.uniform(0.8, 2.0), rng.uniform(0.8, 2.0)
            y_wall = side * width / 2
            lo = np.array([x0, min(y_wall, y_wall - side * depth), 0.0])
            hi = np.array([x0 + w, max(y_wall, y_wall - side * depth), h])
            room.boxes.append((lo, hi, float(rng.uniform(0.2, 0.6))))
        for _ in range(int(rng.integers(0, 2 + round(2 * difficulty)))):
            c = np.array([rng.uniform(2.0, length - 1.5), rng.uniform(-width / 2 + 1.5, width / 2 - 1.5)])
            size = rng.uniform([0.3, 0.3, 0.7], [1.4, 0.9, 1.1])
            if rng.random() < 0.3:   # a pillar
                size = np.array([0.4, 0.4, room.height])
            room.boxes.append((np.r_[c - size[:2] / 2, 0.0], np.r_[c + size[:2] / 2, size[2]], float(rng.uniform(0.2, 0.6))))
        for _ in range(tall_objects):
            c = np.array([rng.uniform(2.0, length - 1.0), rng.uniform(-width / 2 + 0.6, width / 2 - 0.6)])
            if rng.random() < 0.35:                                   # a pole: coat stand, floor lamp
                size = np.r_[rng.uniform(0.05, 0.3, 2), rng.uniform(1.4, 2.0)]
            else:                                                     # a cabinet, locker, shelf end
                size = np.r_[rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.7), rng.uniform(1.2, 2.1)]
            room.boxes.append((np.r_[c - size[:2] / 2, 0.0], np.r_[c + size[:2] / 2, size[2]], float(rng.uniform(0.2, 0.6))))
        return room

    def free_area(self, margin: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned floor region people move in: (xy min, xy max)."""
        return (np.array([1.5, -self.width / 2 + margin]), np.array([self.length - margin, self.width / 2 - margin]))

    def is_free(self, xy: np.ndarray, clearance: float = 0.5) -> bool:
        """True when ``xy`` is at least ``clearance`` from every piece of furniture."""
        for lo, hi, _ in self.boxes:
            if np.all(xy > lo[:2] - clearance) and np.all(xy < hi[:2] + clearance):
                return False
        return True

    def meshes(self) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(vertices, triangles, reflectivity) of floor, ceiling, walls and furniture."""
        out = []
        L, W, H = self.length, self.width, self.height
        out.append(_box_mesh(np.array([-0.5, -W / 2, -0.1]), np.array([L, W / 2, 0.0]), 0.25))      # floor
        out.append(_box_mesh(np.array([-0.5, -W / 2, H]), np.array([L, W / 2, H + 0.1]), 0.4))       # ceiling
        out.append(_box_mesh(np.array([-0.6, -W / 2, 0]), np.array([-0.5, W / 2, H]), 0.5))          # back wall
        out.append(_box_mesh(np.array([L, -W / 2, 0]), np.array([L + 0.1, W / 2, H]), 0.5))          # far wall
        out.append(_box_mesh(np.array([-0.5, -W / 2 - 0.1, 0]), np.array([L, -W / 2, H]), 0.5))     # right wall
        out.append(_box_mesh(np.array([-0.5, W / 2, 0]), np.array([L, W / 2 + 0.1, H]), 0.5))       # left wall
        for lo, hi, refl in self.boxes:
            out.append(_box_mesh(lo, hi, refl))
        return out


def _box_mesh(lo: np.ndarray, hi: np.ndarray, refl: float) -> tuple[np.ndarray, np.ndarray, float]:
    """An axis-aligned box as 8 vertices and 12 triangles."""
    x = np.array([[lo[0], lo[1], lo[2]], [hi[0], lo[1], lo[2]], [hi[0], hi[1], lo[2]], [lo[0], hi[1], lo[2]],
                  [lo[0], lo[1], hi[2]], [hi[0], lo[1], hi[2]], [hi[0], hi[1], hi[2]], [lo[0], hi[1], hi[2]]])
    t = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    return x.astype(np.float32), t.astype(np.uint32), refl


@dataclass
class Scan:
    """One sweep. Arrays are per return, in the sensor frame; ``t`` is the offset within the sweep."""

    stamp: float
    xyz: np.ndarray          # (M, 3) float32
    intensity: np.ndarray    # (M,) float32
    ring: np.ndarray         # (M,) uint16
    t: np.ndarray            # (M,) float32, s
    gt_person: np.ndarray    # (M,) uint16, 0 = background


class LidarSimulator:
    """Casts scans of one static room; people are given per scan as posed meshes."""

    def __init__(self, config: LidarConfig, room: Room) -> None:
        o3d_ = _require_open3d()
        self.config = config
        self.room = room
        self.rot = config.mount_rotation                      # sensor -> world
        self.origin = np.asarray(config.mount_xyz, np.float64)
        dirs_s = config.directions().reshape(-1, 3)           # (R, 3) sensor frame, row-major beam x column
        self.dirs_sensor = dirs_s
        self.dirs_world = dirs_s @ self.rot.T
        self.ring = np.repeat(np.arange(config.beams, dtype=np.uint16), config.columns)
        self.col = np.tile(np.arange(config.columns), config.beams)
        self.t_offset = (self.col / config.columns / config.rate).astype(np.float32)
        # Static room: one cast per scene.
        scene = o3d_.t.geometry.RaycastingScene()
        refl = []
        for v, tri, r in room.meshes():
            scene.add_triangles(o3d_.core.Tensor(v), o3d_.core.Tensor(tri))
            refl.append(r)
        rays = np.concatenate([np.broadcast_to(self.origin, self.dirs_world.shape), self.dirs_world], 1)
        hit = scene.cast_rays(o3d_.core.Tensor(rays.astype(np.float32)))
        self.static_range = hit["t_hit"].numpy().astype(np.float64)
        gid = hit["geometry_ids"].numpy()
        refl_arr = np.asarray(refl + [0.0])
        self.static_refl = refl_arr[np.where(gid < len(refl), gid, len(refl))]
        normals = hit["primitive_normals"].numpy()
        self.static_cos = np.abs(np.sum(normals * self.dirs_world, 1))

    def sweep_offset(self, xy_world: np.ndarray) -> float:
        """Offset (s) within the sweep at which the beam passes the world point ``xy_world``."""
        d = self.rot.T @ (np.r_[xy_world, self.origin[2]] - self.origin)
        az = np.arctan2(d[1], d[0])
        col = (az + np.pi) / (2 * np.pi) * self.config.columns
        return float((col % self.config.columns) / self.config.columns / self.config.rate)

    def _person_rays(self, vertices: list[np.ndarray]) -> np.ndarray:
        """Indices of rays that can hit any of the given meshes (world vertices)."""
        cfg = self.config
        el_all = self.config.elevations
        step = 2 * np.pi / cfg.columns
        out = []
        for v in vertices:
            d = (v - self.origin) @ self.rot                       # sensor frame
            az = np.arctan2(d[:, 1], d[:, 0])
            az_c = np.arctan2(d[:, 1].mean(), d[:, 0].mean())
            rel = (az - az_c + np.pi) % (2 * np.pi) - np.pi
            el = np.arctan2(d[:, 2], np.hypot(d[:, 0], d[:, 1]))
            c0 = int(np.floor((az_c + rel.min() + np.pi) / step)) - 1
            c1 = int(np.ceil((az_c + rel.max() + np.pi) / step)) + 1
            cols = np.arange(c0, c1 + 1) % cfg.columns
            margin = np.deg2rad(0.5)
            beams = np.nonzero((el_all >= el.min() - margin) & (el_all <= el.max() + margin))[0]
            if beams.size and cols.size:
                out.append((beams[:, None] * cfg.columns + cols[None, :]).ravel())
        if not out:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(out))

    def scan(self, stamp: float, people: list[tuple[int, np.ndarray, np.ndarray, float]],
             props: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, *,
             full: bool = True, noise_scale: float = 1.0) -> Scan:
        """Cast one sweep.

        ``people``: (gt id >= 1, world vertices (V, 3), triangles, reflectivity) per person, posed
        at the moment the sweep passes them. ``props``: extra background meshes that move with the
        scene (e.g. a seat under a sitting person). ``full=False`` returns only person returns
        (for the sequence store: no need to materialise the room every scan).
        """
        o3d_ = _require_open3d()
        rng_all = self.static_range.copy() if full else None
        idx = self._person_rays([v for _, v, _, _ in people] + [v for v, _ in props])
        person_gid = np.zeros(0, dtype=np.uint16)
        if idx.size:
            scene = o3d_.t.geometry.RaycastingScene()
            ids, refl = [], []
            for pid, v, tri, r in people:
                scene.add_triangles(o3d_.core.Tensor(v.astype(np.float32)), o3d_.core.Tensor(tri))
                ids.append(pid)
                refl.append(r)
            for v, tri in props:
                scene.add_triangles(o3d_.core.Tensor(v.astype(np.float32)), o3d_.core.Tensor(tri))
                ids.append(0)
                refl.append(0.35)
            rays = np.concatenate([np.broadcast_to(self.origin, (idx.size, 3)), self.dirs_world[idx]], 1)
            hit = scene.cast_rays(o3d_.core.Tensor(rays.astype(np.float32)))
            t_hit = hit["t_hit"].numpy().astype(np.float64)
            gid = hit["geometry_ids"].numpy()
            nearer = np.isfinite(t_hit) & (t_hit < self.static_range[idx])
            idx, t_hit, gid = idx[nearer], t_hit[nearer], gid[nearer]
            normals = hit["primitive_normals"].numpy()[nearer]
            ids_arr, refl_arr = np.asarray(ids, np.uint16), np.asarray(refl)
            person_gid = ids_arr[gid]
            person_refl = refl_arr[gid]
            person_cos = np.abs(np.sum(normals * self.dirs_world[idx], 1))
        if full:
            ranges = rng_all
            gt = np.zeros(len(ranges), np.uint16)
            refl, cos = self.static_refl.copy(), self.static_cos.copy()
            if idx.size:
                ranges[idx], gt[idx], refl[idx], cos[idx] = t_hit, person_gid, person_refl, person_cos
            rays = np.arange(len(ranges))
        elif idx.size:
            keep = person_gid > 0      # props (seats) are background: not part of a person cloud
            rays, ranges, gt = idx[keep], t_hit[keep], person_gid[keep]
            refl, cos = person_refl[keep], person_cos[keep]
        else:
            rays, ranges, gt, refl, cos = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint16),
                                           np.zeros(0), np.zeros(0))
        return self._returns(stamp, rays, ranges, gt, refl, cos, rng, noise_scale)

    def _returns(self, stamp: float, rays: np.ndarray, ranges: np.ndarray, gt: np.ndarray, refl: np.ndarray,
                 cos: np.ndarray, rng: np.random.Generator, noise_scale: float) -> Scan:
        """Turn hits (per ray index, all arrays aligned) into returns: dropout, range noise, intensity."""
        cfg = self.config
        # Missing returns: no echo beyond range, random dropouts, more on dark and grazing surfaces.
        p_drop = cfg.dropout * noise_scale * (1.0 + 2.0 * (1.0 - refl)) + 0.05 * noise_scale * (cos < 0.15)
        valid = np.isfinite(ranges) & (ranges >= cfg.min_range) & (ranges <= cfg.max_range)
        valid &= rng.random(len(ranges)) >= p_drop
        rays, ranges, gt, refl, cos = rays[valid], ranges[valid], gt[valid], refl[valid], cos[valid]
        ranges = ranges + rng.normal(0.0, cfg.range_noise * noise_scale, len(ranges))
        xyz = (self.dirs_sensor[rays] * ranges[:, None]).astype(np.float32)
        # Intensity: reflectivity x incidence, fading with range; 0-255 like most drivers.
        intensity = (255.0 * refl * (0.3 + 0.7 * cos) / (1.0 + (ranges / 40.0) ** 2)).astype(np.float32)
        return Scan(stamp, xyz, intensity, self.ring[rays], self.t_offset[rays], gt.astype(np.uint16))

    def sensor_to_world(self, xyz: np.ndarray) -> np.ndarray:
        return np.asarray(xyz, np.float64) @ self.rot.T + self.origin

    def world_to_sensor(self, xyz: np.ndarray) -> np.ndarray:
        return (np.asarray(xyz, np.float64) - self.origin) @ self.rot


def config_for(beams: int, **kw) -> LidarConfig:
    """A LidarConfig for ``beams`` with overrides (None values ignored)."""
    return replace(LidarConfig(beams=beams), **{k: v for k, v in kw.items() if v is not None})
