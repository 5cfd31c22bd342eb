"""The synthetic multimodal world: rooms, people, activities, and every sensor derived from one
kinematic truth (LiDAR returns on the body surfaces, IMUs on the limbs, SMPL joints).

A run is split into scenes (``scene_minutes`` each): every scene draws a new room, sensor
mounting and new people (new subjects), so splits by subject hold unseen bodies and styles.
``difficulty`` scales the realism that removes shortcuts (docs/synthetic-world.md):
0 = ideal sensors, identical-looking bodies, near people; 1 = the default; up to 2 = harsher.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from despite_core.data.resample import resample_imu
from despite_core.data.store import SMPL_JOINT_NAMES, Sequence
from despite_core.data.synth.body import BodyShape, CapsuleMesh, capsule_endpoints, forward_kinematics
from despite_core.data.synth.imu import ImuConfig, ImuStream, simulate_imu, store_layout
from despite_core.data.synth.kinematics import Kinematics
from despite_core.data.synth.lidar import LidarConfig, LidarSimulator, Room, Scan, _box_mesh
from despite_core.data.synth.motion import (CLASS_NAMES, EDITIONS, FALL_CLASSES, MOVING, SEAT_DROP, Segment, Style,
                                            base_pose, class_names, plan_segments, synthesize_pose)
from despite_core.data.synth.text import segment_text

SEATED_ACTIVITIES = ("sit down", "sitting", "stand up")
BED_START = 0.15            # edition 2: chance that a person begins the scene lying on a bed
# LiDARs of a mixed training set (WorldConfig.lidar_mix): vertical fields of view (up, down deg) per beam count,
# as VLP-16, OS0/OS1, HDL-32/64-like sensors.
LIDAR_MIX_FOV = {16: ((15.0, -15.0),), 32: ((22.5, -22.5), (45.0, -45.0), (10.67, -30.67)),
                 64: ((22.5, -22.5), (45.0, -45.0), (2.0, -24.8)), 128: ((22.5, -22.5), (45.0, -45.0))}


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines a synthetic run; the same config and seed give the same data."""

    minutes: float = 1.0
    people: int = 2
    seed: int = 0
    difficulty: float = 1.0
    scene_minutes: float = 1.0
    lidar: LidarConfig = field(default_factory=LidarConfig)
    imu: ImuConfig = field(default_factory=ImuConfig)
    untexted: float = 0.2                     # fraction of segments without text
    bvh: tuple[str, ...] = ()                 # mocap files that replace procedural motion (person 1, 2, ...)
    # per BVH file: its labelled stretches (start_s, end_s, class name) in clip time, repeated each time the clip
    # repeats; empty = that person unlabelled (-1)
    bvh_labels: tuple[tuple[tuple[float, float, str], ...], ...] = ()
    height_range: tuple[float, float] | None = None   # override body stature range (m), e.g. out of domain
    mount: tuple[float, float, float] | None = None   # fixed LiDAR (y, height, pitch deg) on the near wall; None = random per scene
    in_place: bool = False                    # everyone stays where they are from the first scan (no walk / run)
    distance: tuple[float, float] | None = None   # people's horizontal distance from the LiDAR (m), e.g. (10, 15)
    tall_objects: int = 0                     # extra free-standing person-sized objects (cabinets, poles)
    edition: int = 1                          # 1 = the 15 base classes; 2 = + fall, lying, get up, beds
    lidar_mix: bool = False                   # draw each scene's LiDAR (beams, FOV, mounting 0.5-3 m) at random

    def __post_init__(self) -> None:
        if self.minutes <= 0 or self.scene_minutes <= 0:
            raise ValueError("minutes and scene_minutes must be positive")
        if not 1 <= self.people <= 8:
            raise ValueError(f"people must be 1-8, got {self.people}")
        if not 0.0 <= self.difficulty <= 2.0:
            raise ValueError(f"difficulty must be within [0, 2], got {self.difficulty}")
        if not 0.0 <= self.untexted <= 1.0:
            raise ValueError(f"untexted must be within [0, 1], got {self.untexted}")
        if self.edition not in EDITIONS:
            raise ValueError(f"edition must be one of {EDITIONS}, got {self.edition}")
        if self.distance is not None and not 1.0 <= self.distance[0] < self.distance[1] <= 30.0:
            raise ValueError(f"distance must be (near, far) metres with 1 <= near < far <= 30, got {self.distance}")
        if self.bvh_labels and len(self.bvh_labels) != len(self.bvh):
            raise ValueError(f"bvh_labels needs one entry per BVH file ({len(self.bvh)}), got {len(self.bvh_labels)}")
        for f, rows in zip(self.bvh, self.bvh_labels):
            for start, end, name in rows:
                if name not in self.class_names:
                    raise ValueError(f"label {name!r} for {f} is not a class of edition {self.edition}: "
                                     f"{', '.join(self.class_names)}")
                if not end > start >= 0:
                    raise ValueError(f"label {name!r} for {f}: need 0 <= start_s < end_s, got {start}, {end}")
        if abs(self.imu.rate * round(1 / self.lidar.rate, 6) - round(self.imu.rate / self.lidar.rate)) > 1e-6:
            raise ValueError(f"IMU rate {self.imu.rate} Hz must be a multiple of the LiDAR rate {self.lidar.rate} Hz")

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.edition)

    @property
    def scenes(self) -> list[float]:
        """Duration (s) of each scene."""
        total = self.minutes * 60.0
        per = self.scene_minutes * 60.0
        n = int(np.ceil(total / per - 1e-9))
        return [min(per, total - k * per) for k in range(n)]


@dataclass
class Person:
    """One simulated person in one scene: identity, plan, kinematics and IMU readings."""

    pid: int
    subject: str
    shape: BodyShape
    style: Style
    segments: list[Segment]
    kin: Kinematics                      # world frame, at the IMU rate
    seg_index: np.ndarray                # (N,) segment of each kinematic sample (-1 for mocap)
    imu: ImuStream                       # measured, wearer's own heading
    imu_ideal: ImuStream                 # error-free, LiDAR world heading (for tests)
    reflectivity: float
    mesh: CapsuleMesh
    seats: list[tuple[float, float, np.ndarray, np.ndarray]] = field(default_factory=list)  # (t0, t1, verts, tris)
    class_names: tuple[str, ...] = CLASS_NAMES
    source: str = "procedural"           # or "bvh": motion capture drives this person

    def sample_index(self, t: np.ndarray | float) -> np.ndarray:
        """Nearest kinematic sample of time(s) t."""
        rate = 1.0 / float(self.kin.times[1] - self.kin.times[0])
        return np.clip(np.rint(np.asarray(t) * rate).astype(np.int64), 0, len(self.kin.times) - 1)

    def labels_at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class ids (-1 = unlabelled) and texts at times ``t``."""
        seg = self.seg_index[self.sample_index(t)]
        if not self.segments:
            return np.full(len(t), -1, np.int64), np.full(len(t), "", dtype="<U1")
        ids = np.array([self.class_names.index(s.activity) for s in self.segments])
        texts = np.array([s.text for s in self.segments])
        return np.where(seg >= 0, ids[seg], -1), np.where(seg >= 0, texts[seg], "")

    def vertices_at(self, t: float) -> np.ndarray:
        """Posed body surface (V, 3) world frame at the kinematic sample nearest ``t``."""
        k = int(self.sample_index(t))
        a, b, _ = capsule_endpoints(self.kin.positions[k], self.shape.girth)
        return self.mesh.pose(a, b)


@dataclass
class SceneState:
    index: int
    duration: float
    room: Room
    lidar: LidarSimulator
    people: list[Person]
    rng: np.random.Generator

    @property
    def stamps(self) -> np.ndarray:
        """Scan stamps (s from the scene's start): the start of each sweep."""
        n = int(np.floor(self.duration * self.lidar.config.rate + 1e-9))
        return np.arange(n) / self.lidar.config.rate


def _waypoint(rng: np.random.Generator, room: Room, near: np.ndarray | None, max_dist: float,
              band: tuple[np.ndarray, float, float] | None = None, avoid: np.ndarray | None = None) -> np.ndarray:
    """A free spot; ``band`` = (sensor xy, near, far): only spots at that horizontal distance;
    ``avoid`` (K, 2): only spots at least START_GAP from each of these (where the others stand)."""
    lo, hi = room.free_area()
    for _ in range(2000 if band is not None or avoid is not None else 200):
        p = rng.uniform(lo, hi)
        if p[0] - 0.3 > max_dist:
            continue
        if band is not None and not band[1] <= float(np.linalg.norm(p - band[0])) <= band[2]:
            continue
        if avoid is not None and len(avoid) and float(np.min(np.linalg.norm(avoid - p, axis=1))) < START_GAP:
            continue
        if room.is_free(p) and (near is None or np.linalg.norm(p - near) > 1.5):
            return p
    raise RuntimeError("could not place a waypoint in the room's free area (room too cluttered"
                       + (" or too crowded for the people in it)" if avoid is not None and len(avoid) else ")"))


PERSON_GAP = 0.6     # m between two people's roots (pelvis on the floor): bodies never overlap
START_GAP = 1.0      # m from everyone else where a person starts
SHOVE_SPEED = 2.5    # m/s: a person whom another walks or runs up to steps aside at most this fast


def _root_path(speed: np.ndarray, yaw_rate: np.ndarray, moving: np.ndarray, dt: float, room: Room,
               rng: np.random.Generator, max_dist: float,
               band: tuple[np.ndarray, float, float] | None = None, others: np.ndarray | None = None,
               fixed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integrate forward speed and yaw rate into floor positions (N, 2) and headings (N,).

    While moving, the heading steers toward random waypoints in the free area; a step that would
    enter furniture or leave the room is not taken and a new waypoint is drawn.

    ``others`` (K, N, 2): the people placed before this one, on the same time grid. This person
    starts at least START_GAP from them, a walking step that would come closer than PERSON_GAP to
    one of them is not taken (a new waypoint is drawn, as for furniture), and where one of them comes
    closer anyway (walking up to this person), they step aside (at most SHOVE_SPEED), unless ``fixed``
    (N,) holds them there (seated, on the floor, on a bed: the other then passes close).
    """
    n = len(speed)
    xy = np.empty((n, 2))
    heading = np.empty(n)
    others = np.zeros((0, n, 2)) if others is None else others
    p = _waypoint(rng, room, None, max_dist, band, avoid=others[:, 0] if len(others) else None)
    h = float(rng.uniform(-np.pi, np.pi))
    goal = _waypoint(rng, room, p, max_dist, band)
    lo, hi = room.free_area(margin=0.4)

    def free(q: np.ndarray) -> bool:                  # a spot this person may stand on
        return bool(np.all(q > lo) and np.all(q < hi) and room.is_free(q, clearance=0.35))

    # How far two people can close in from step i to j, at most: reach[j] - reach[i] (the others' largest
    # step plus this person's own, walking and stepping aside), so the gaps are checked only when it matters.
    clear_until = n if not len(others) else 0
    if len(others):
        own = (float(np.max(speed, initial=0.0)) + SHOVE_SPEED) * dt
        theirs = np.r_[0.0, np.linalg.norm(np.diff(others, axis=1), axis=2).max(0)]
        reach = np.cumsum(theirs + own)
    nobody, no_gap = np.zeros((0, 2)), np.zeros(0)
    for i in range(n):
        o, gap = nobody, no_gap
        if i >= clear_until:
            o = others[:, i]
            gap = np.hypot(o[:, 0] - p[0], o[:, 1] - p[1])
            if gap.min() > PERSON_GAP + 0.1:
                clear_until = int(np.searchsorted(reach, reach[i] + gap.min() - PERSON_GAP - 0.1))
                o, gap = nobody, no_gap
        if moving[i]:
            bearing = np.arctan2(goal[1] - p[1], goal[0] - p[0])
            err = (bearing - h + np.pi) % (2 * np.pi) - np.pi
            h += np.clip(2.0 * err, -2.5, 2.5) * dt
            step = p + speed[i] * dt * np.array([np.cos(h), np.sin(h)])
            # into someone: not taken, unless it moves away from everyone already too close
            blocked = False
            if len(o) and gap.min() < PERSON_GAP + speed[i] * dt:
                to = np.hypot(o[:, 0] - step[0], o[:, 1] - step[1])
                blocked = bool(np.any((to < PERSON_GAP) & (to < gap)))
            if not blocked and free(step):
                p = step
                if len(o):
                    gap = np.hypot(o[:, 0] - p[0], o[:, 1] - p[1])
            else:
                goal = _waypoint(rng, room, p, max_dist, band)
            if np.linalg.norm(goal - p) < 0.7:
                goal = _waypoint(rng, room, p, max_dist, band)
        if len(o) and gap.min() < PERSON_GAP and (fixed is None or not fixed[i]):
            k = int(np.argmin(gap))
            away = (p - o[k]) / max(float(gap[k]), 1e-6)
            step = p + min(PERSON_GAP - float(gap[k]), SHOVE_SPEED * dt) * away
            if free(step):
                p = step
        h += yaw_rate[i] * dt
        xy[i], heading[i] = p, h
    return xy, heading


def _seat_props(person_xy: np.ndarray, heading: np.ndarray, segments: list[Segment], times: np.ndarray,
                shape: BodyShape) -> list[tuple[float, float, np.ndarray, np.ndarray]]:
    """A seat box under the pelvis for each run of sit down / sitting / stand up segments."""
    seats = []
    k = 0
    while k < len(segments):
        if segments[k].activity not in SEATED_ACTIVITIES:
            k += 1
            continue
        j = k
        while j + 1 < len(segments) and segments[j + 1].activity in SEATED_ACTIVITIES:
            j += 1
        t0, t1 = segments[k].start, segments[j].end
        i0 = int(np.clip(np.searchsorted(times, t0), 0, len(times) - 1))
        back = np.array([np.cos(heading[i0]), np.sin(heading[i0])])
        c = person_xy[i0] - 0.08 * back
        top = shape.pelvis_height - SEAT_DROP * shape.height / 1.75 - 0.1
        v, tri, _ = _box_mesh(np.r_[c - 0.21, 0.0], np.r_[c + 0.21, top], 0.35)
        seats.append((t0, t1, v, tri))
        k = j + 1
    return seats


def _oriented_box(center: np.ndarray, heading: float, length: float, width: float, top: float):
    """A box on the floor, ``length`` along ``heading``: 8 vertices and 12 triangles."""
    from despite_core.data.rotations import rot_z

    v, tri, _ = _box_mesh(np.array([-length / 2, -width / 2, 0.0]), np.array([length / 2, width / 2, top]), 0.4)
    v = v.astype(np.float64) @ rot_z(np.array(heading)).T + np.r_[center, 0.0]
    return v.astype(np.float32), tri


def _bed_props(person_xy: np.ndarray, heading: np.ndarray, segments: list[Segment],
               shape: BodyShape) -> list[tuple[float, float, np.ndarray, np.ndarray]]:
    """A bed (2.0 x 0.9 m, top at seat height) under a person who begins the scene lying on it, for the
    whole scene, its edge on the side they get up to."""
    if not segments or segments[0].activity != "lying" or segments[0].params.get("bed", 0.0) <= 0:
        return []
    fwd = np.array([np.cos(heading[0]), np.sin(heading[0])])
    left = np.array([-fwd[1], fwd[0]])
    turn = next((s.params["turn"] for s in segments if s.activity == "get up"), 1.0)
    center = person_xy[0] + 0.08 * shape.height / 1.75 * fwd - turn * 0.3 * left
    top = shape.pelvis_height - SEAT_DROP * shape.height / 1.75 - 0.1
    v, tri = _oriented_box(center, float(heading[0]), 2.0, 0.9, top)
    return [(-np.inf, np.inf, v, tri)]


def _floor_contact(kin: Kinematics, shape: BodyShape, style: Style, segments: list[Segment],
                   seg_index: np.ndarray, rate: float) -> None:
    """Edition 2's floor: no body part below it (the joint-angle blends of sitting down and standing up
    push the feet through it), and while falling, lying on or getting up from the floor the lowest surface
    point is where a standing person's is (the generators give the orientation, the floor the height).
    Moves the body vertically, in place."""
    a, b, r = capsule_endpoints(kin.positions, shape.girth)
    low = (np.minimum(a[..., 2], b[..., 2]) - r).min(axis=-1)
    stand = forward_kinematics(shape, base_pose(1, style), np.zeros((1, 2)), np.zeros(1), np.zeros(1))
    a0, b0, _ = capsule_endpoints(stand.positions, shape.girth)
    target = float((np.minimum(a0[..., 2], b0[..., 2]) - r).min())
    on_floor = np.array([s.activity in FALL_CLASSES and s.params.get("bed", 0.0) <= 0 for s in segments])
    w = on_floor[seg_index].astype(np.float64) if len(segments) else np.zeros(len(low))

    def box(x: np.ndarray, seconds: float) -> np.ndarray:
        k = max(int(seconds * rate), 1)
        return np.convolve(np.pad(x, (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="same")[k:-k]

    w = box(w, 0.2)                        # 0.2 s ramps where the floor takes over and lets go
    shift = w * (target - low) + (1 - w) * np.maximum(target - low, 0.0)
    kin.positions[..., 2] += box(shift, 0.05)[:, None]


def simulate_person(pid: int, subject: str, duration: float, room: Room, config: WorldConfig,
                    rng: np.random.Generator, lidar_origin_x: float, lidar_xy: np.ndarray | None = None,
                    others: np.ndarray | None = None) -> Person:
    """Draw a body, a style and an activity plan; derive kinematics and IMU readings. ``others`` (K, N, 2):
    the root positions of the people placed before, on this person's time grid (they do not overlap)."""
    d = config.difficulty
    rate = config.imu.rate
    times = np.arange(int(np.ceil((duration + 0.3) * rate))) / rate
    if config.height_range is not None:
        shape = replace(BodyShape.random(rng, max(d, 0.05)), height=float(rng.uniform(*config.height_range)))
    else:
        shape = BodyShape.random(rng, max(d, 0.05))
    style = Style.random(rng, max(d, 0.05))
    scale = shape.height / 1.75
    # Far people at higher difficulty: the walkable area reaches the far wall.
    max_dist = lidar_origin_x + 5.0 + 6.0 * d
    band = None
    if config.distance is not None:
        sensor = lidar_xy if lidar_xy is not None else np.array([lidar_origin_x, 0.0])
        band = (sensor, float(config.distance[0]), float(config.distance[1]))
        max_dist = float(sensor[0] + config.distance[1])
    bvh_index = pid - 1
    if bvh_index < len(config.bvh):
        from despite_core.data.importers.bvh_format import load_bvh
        from despite_core.data.importers.bvh_rig import bvh_to_kinematics

        rows = config.bvh_labels[bvh_index] if config.bvh_labels else ()
        kin, segments, seg_index = _place_mocap(bvh_to_kinematics(load_bvh(config.bvh[bvh_index])), times, room,
                                                rng, max_dist, rows)
        seats: list = []
    else:
        # In place: no activity that translates the body, so everyone stays where the first scan sees them.
        on_bed = config.edition >= 2 and bool(rng.random() < BED_START)
        segments = plan_segments(duration + 0.3, rng, weights={a: 0.0 for a in MOVING} if config.in_place else None,
                                 edition=config.edition, start_on_bed=on_bed)
        for seg in segments:
            seg.text = segment_text(seg.activity, rng, config.untexted)
        pose, speed, yaw, seg_index = synthesize_pose(segments, times, style, scale, rng)
        moving = np.array([segments[k].activity in MOVING for k in seg_index])
        fixed = np.array([s.activity in SEATED_ACTIVITIES + FALL_CLASSES for s in segments], bool)[seg_index]
        xy, heading = _root_path(speed, yaw, moving, 1.0 / rate, room, rng, max_dist, band, others, fixed)
        kin = forward_kinematics(shape, pose, xy, heading, times)
        if config.edition >= 2:
            _floor_contact(kin, shape, style, segments, seg_index, rate)
        seats = _seat_props(xy, heading, segments, times, shape) + _bed_props(xy, heading, segments, shape)
    imu_cfg = config.imu.scaled(d)
    measured, ideal = simulate_imu(kin, imu_cfg, rng)
    return Person(pid=pid, subject=subject, shape=shape, style=style, segments=segments, kin=kin,
                  seg_index=seg_index, imu=measured, imu_ideal=ideal,
                  reflectivity=float(rng.uniform(0.15, 0.7) if d > 0 else 0.5),
                  mesh=CapsuleMesh(capsule_endpoints(kin.positions[0], shape.girth)[2]), seats=seats,
                  class_names=config.class_names, source="bvh" if bvh_index < len(config.bvh) else "procedural")


MOCAP_LOWPASS_HZ = 6.0   # joint positions of mocap are low-passed here before the IMU model differentiates them


def _lowpass(x: np.ndarray, rate: float) -> np.ndarray:
    """Zero-phase low-pass along time (axis 0) at MOCAP_LOWPASS_HZ: mocap marker and solver jitter, which
    a second derivative would turn into accelerations of tens of m/s^2, goes; human motion stays."""
    from scipy.signal import butter, sosfiltfilt

    if rate <= 2.5 * MOCAP_LOWPASS_HZ or len(x) < 16:
        return x
    sos = butter(2, MOCAP_LOWPASS_HZ, fs=rate, output="sos")
    return sosfiltfilt(sos, x, axis=0, padtype="odd")   # odd: a steady travel stays steady at the ends


SEAM_JUMP = 0.6      # m: a joint that moves this far from one repetition of a clip to the next is a cut
SEAM_BLEND = 0.4     # s over which a smaller jump (positions and orientations) is blended away
SEAM_TURN = 0.9 * np.pi   # rad: a joint whose orientation turns more than this from one repetition to the next is a cut
SEAM_SPIN = 3.0      # rad/s: an orientation jump is blended over at least its angle / SEAM_SPIN (up to 1 s)
TURN_RATE = 2.0      # rad/s: how fast a repetition turned away from a wall comes round (at least SEAM_BLEND)
SEAM_GUARD = 1.3     # s each side of a cut left unlabelled: no window that spans it keeps a label


def _ease_out(u: np.ndarray) -> np.ndarray:
    """1 at u <= 0 easing to 0 at u >= 1 (half a cosine)."""
    return 0.5 * (1.0 + np.cos(np.pi * np.clip(u, 0.0, 1.0)))


def _heading(kin_pos: np.ndarray) -> float:
    """Facing direction (rad) of one pose (24, 3): perpendicular to the hip line, to the body's front."""
    left = kin_pos[SMPL_JOINT_NAMES.index("left_hip"), :2] - kin_pos[SMPL_JOINT_NAMES.index("right_hip"), :2]
    return float(np.arctan2(-left[0], left[1]))


def _place_mocap(kin: Kinematics, times: np.ndarray, room: Room, rng: np.random.Generator, max_dist: float,
                 label_rows: tuple[tuple[float, float, str], ...] = ()
                 ) -> tuple[Kinematics, list[Segment], np.ndarray]:
    """Put a mocap clip in the room for the whole scene, resampled to ``times`` by cubic splines.

    The clip repeats, each repetition starting where and facing how the last one ended (so a walk keeps
    walking), turned when it would leave the free floor (the turn eases in at TURN_RATE, the travel
    following the heading), or moved to a new free spot when no turn keeps it inside. Where a repetition
    does not quite continue the last one's pose, the jump (joint positions and orientations) is blended
    away over SEAM_BLEND s (longer for a large turn: SEAM_SPIN); where a joint jumps more than SEAM_JUMP
    or turns more than SEAM_TURN (a cut: a clip that starts lying and ends standing, a new spot) the
    SEAM_GUARD seconds each side are unlabelled.
    ``label_rows`` (start_s, end_s, class name) in clip time label every repetition.
    Returns the kinematics, the labelled segments and each sample's segment (-1 = unlabelled)."""
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, RotationSpline

    from despite_core.data.importers.common import segments_to_frames
    from despite_core.data.resample import interp_linear
    from despite_core.data.rotations import rot_z

    span = kin.times[-1] - kin.times[0]
    if span <= 0:
        raise ValueError("BVH clip has a single frame")
    late = [name for s0, _, name in label_rows if s0 >= span]
    if late:
        raise ValueError(f"label(s) {late} start at or after the clip's end ({span:.3f} s of clip time)")
    lo, hi = room.free_area(margin=0.5)
    clip_root = kin.positions[:, 0, :2] - kin.positions[0, 0, :2]     # the root's travel in clip time
    probe_xy = interp_linear(kin.times, clip_root, np.linspace(kin.times[0], kin.times[-1], 12))
    turn = _heading(kin.positions[-1]) - _heading(kin.positions[0])

    def inside(start: np.ndarray, yaw: float) -> bool:
        """This repetition and the next (continuing straight) stay on the free floor: turns come early."""
        r2 = rot_z(np.array(yaw))[:2, :2]
        r_next = rot_z(np.array(yaw + turn))[:2, :2]
        path = np.concatenate([probe_xy @ r2.T + start, probe_xy @ r_next.T + start + clip_root[-1] @ r2.T])
        return bool(np.all(path > lo) and np.all(path < hi) and np.all(path[:, 0] <= max_dist)
                    and all(room.is_free(p, clearance=0.3) for p in path))

    reps = int(np.floor((times[-1] - times[0]) / span)) + 1
    rep = np.minimum(((times - times[0]) // span).astype(np.int64), reps - 1)
    local = kin.times[0] + (times - times[0]) - rep * span
    # Twice-differentiable in time (cubic splines): the IMU model differentiates positions twice and
    # orientations once, and a linear interpolation of 30-Hz mocap would read as spikes at every frame.
    pos = CubicSpline(kin.times, _lowpass(kin.positions, kin.rate), axis=0)(local)
    nj = kin.rotations.shape[1]
    rot = np.stack([RotationSpline(kin.times, Rotation.from_matrix(kin.rotations[:, j]))(local).as_matrix()
                    for j in range(nj)], axis=1)
    root0 = np.r_[kin.positions[0, 0, :2], 0.0]
    for _ in range(50):   # a first repetition that stays on the free floor (the last draw if none does)
        start, yaw = _waypoint(rng, room, None, max_dist), float(rng.uniform(-np.pi, np.pi))
        if inside(start, yaw):
            break
    cuts: list[float] = []
    end_pose = end_rot = rep_end = None
    grid = np.linspace(0.0, span, 401)                  # for integrating a turned repetition's travel
    grid_root = interp_linear(kin.times - kin.times[0], clip_root, grid)
    for k in range(reps):
        delta, moved = 0.0, k > 0
        if k > 0:   # continue from where and how the last repetition ended, turned if need be
            yaw += turn
            for delta in (0.0, *np.radians([30, -30, 60, -60, 90, -90, 135, -135, 180])):
                if inside(rep_end, yaw + delta):
                    start, moved = rep_end, False
                    break
            else:
                delta = 0.0
                start, yaw = _waypoint(rng, room, None, max_dist), float(rng.uniform(-np.pi, np.pi))
        r = rot_z(np.array(yaw))
        sel = rep == k
        t_in = times[sel] - times[0] - k * span
        p_rep = (pos[sel] - root0) @ r.T + np.r_[start, 0.0]
        q_rep = r @ rot[sel]
        if end_pose is not None:
            first = (kin.positions[0] - root0) @ r.T + np.r_[start, 0.0]
            gap = end_pose - first                       # (24, 3): the pose jump from one repetition to the next
            rgap = Rotation.from_matrix(end_rot @ np.swapaxes(r @ kin.rotations[0], -1, -2)).as_rotvec()   # (24, 3)
            spin = float(np.linalg.norm(rgap, axis=-1).max())
            if moved or float(np.linalg.norm(gap, axis=-1).max()) > SEAM_JUMP or spin > SEAM_TURN:
                cuts.append(float(times[0] + k * span))
            else:                                        # blended away over SEAM_BLEND seconds or more
                wr = _ease_out(t_in / min(1.0, max(SEAM_BLEND, spin / SEAM_SPIN)))
                p_rep += wr[:, None, None] * gap
                blend = Rotation.from_rotvec((wr[:, None, None] * rgap[None]).reshape(-1, 3)).as_matrix()
                q_rep = blend.reshape(len(wr), -1, 3, 3) @ q_rep
        end_r = r
        if delta:   # the turn: the heading eases from its old value to the new over TURN_RATE, travel follows it
            dur = max(SEAM_BLEND, abs(delta) / TURN_RATE)
            ang_grid = delta * (1.0 - _ease_out(grid / dur))
            inc = np.diff(grid_root, axis=0, prepend=grid_root[:1]) @ r[:2, :2].T
            turned = np.einsum("gij,gj->gi", rot_z(ang_grid)[:, :2, :2], inc)
            path = start + np.cumsum(turned, axis=0)     # (grid, 2) the turned repetition's root
            root_now = interp_linear(grid, path, t_in)
            ang = delta * (1.0 - _ease_out(t_in / dur))
            turn_by = rot_z(ang)                         # (n, 3, 3) about the body's own root
            root3 = np.concatenate([p_rep[:, :1, :2], np.zeros((len(t_in), 1, 1))], axis=2)
            p_rep = np.einsum("nij,nkj->nki", turn_by, p_rep - root3) + np.concatenate(
                [root_now[:, None, :], np.zeros((len(t_in), 1, 1))], axis=2)
            q_rep = turn_by[:, None] @ q_rep
            yaw += delta
            end_r = rot_z(np.array(yaw))
            rep_end = path[-1]
        else:
            rep_end = (clip_root[-1] @ r[:2, :2].T) + start
        pos[sel], rot[sel] = p_rep, q_rep
        end_pose = (kin.positions[-1] - np.r_[kin.positions[-1, 0, :2], 0.0]) @ end_r.T + np.r_[rep_end, 0.0]
        end_rot = end_r @ kin.rotations[-1]
    pos[..., 2] -= min(0.0, float(pos[..., 2].min()))   # no joint below the floor
    segments: list[Segment] = []
    seg_index = np.full(len(times), -1, np.int64)
    if label_rows:
        row = np.array(segments_to_frames(local - kin.times[0], [(s, e, i) for i, (s, e, _) in enumerate(label_rows)],
                                          empty=-1), np.int64)
        for k in range(reps):
            for s0, e0, name in label_rows:
                segments.append(Segment(activity=name, start=float(times[0] + k * span + s0),
                                        duration=min(e0, span) - s0, text=name))
        seg_index = np.where(row >= 0, rep * len(label_rows) + row, -1)
        for c in cuts:
            seg_index[np.abs(times - c) < SEAM_GUARD] = -1
    return Kinematics(times=times, positions=pos, rotations=rot), segments, seg_index


def build_scene(config: WorldConfig, index: int, duration: float) -> SceneState:
    """Room, LiDAR mounting and people of scene ``index`` (deterministic for config.seed)."""
    rng = np.random.default_rng([config.seed, index])
    d = config.difficulty
    room = Room.random(rng, d, min_length=config.distance[1] + 1.5 if config.distance is not None else 0.0,
                       tall_objects=config.tall_objects)
    # Mounting: on the near wall, 1.2-2.5 m high, tilted slightly down at higher mounts.
    h = float(rng.uniform(1.2, 2.5))
    pitch = float(np.deg2rad(rng.uniform(0, 8)) * (h > 1.8))
    y = float(rng.uniform(-1, 1))
    lidar = config.lidar
    if config.lidar_mix:   # its own stream: the room and the people are those of the same seed without the mix
        mix = np.random.default_rng([config.seed, index, 11])
        beams = int(mix.choice(sorted(LIDAR_MIX_FOV)))
        fovs = LIDAR_MIX_FOV[beams]
        up, down = fovs[int(mix.integers(len(fovs)))]
        lidar = replace(lidar, beams=beams, fov_up=up, fov_down=down)
        h = float(mix.uniform(0.5, 3.0))
        pitch = float(np.deg2rad(mix.uniform(0.0, np.clip(9.0 * (h - 1.0), 0.0, 25.0))))
    if config.mount is not None:
        y, h, pitch = config.mount[0], config.mount[1], float(np.deg2rad(config.mount[2]))
    lidar_cfg = replace(lidar, mount_xyz=(0.2, y, h), mount_rpy=(0.0, pitch, 0.0))
    sim = LidarSimulator(lidar_cfg, room)
    people: list[Person] = []
    for k in range(1, config.people + 1):       # each placed clear of those before (PERSON_GAP)
        others = np.stack([q.kin.positions[:, 0, :2] for q in people]) if people else None
        people.append(simulate_person(k, f"seed{config.seed}_scene{index:04d}_p{k}", duration, room, config, rng,
                                      lidar_cfg.mount_xyz[0], np.array(lidar_cfg.mount_xyz[:2]), others))
    return SceneState(index=index, duration=duration, room=room, lidar=sim, people=people, rng=rng)


def iter_scans(scene: SceneState, *, full: bool, noise_scale: float) -> Iterator[Scan]:
    """Every sweep of the scene, people posed when the beam passes them."""
    sim = scene.lidar
    rng = np.random.default_rng([scene.index, 7])
    for stamp in scene.stamps:
        people, props = [], []
        for p in scene.people:
            k = int(p.sample_index(stamp))
            t_person = stamp + sim.sweep_offset(p.kin.positions[k, 0, :2])
            people.append((p.pid, p.vertices_at(t_person), p.mesh.triangles, p.reflectivity))
            props.extend((v, tri) for t0, t1, v, tri in p.seats if t0 <= stamp < t1)
        yield sim.scan(float(stamp), people, props, rng, full=full, noise_scale=noise_scale)


def iter_timeline(scene: SceneState, *, full: bool = True, noise_scale: float = 1.0) -> Iterator[tuple[float, str, object]]:
    """Everything the sensors emit, in time order: ``(t, "scan", Scan)`` per sweep (t = its stamp)
    and ``(t, "imu", (person, k))`` per IMU sample k of each person (all sites at once).

    The one schedule behind both the MCAP bag and the live sim_node.
    """
    nxt = {p.pid: 0 for p in scene.people}

    def imu_until(t_end: float):
        rows = []
        for p in scene.people:
            k1 = int(np.searchsorted(p.imu.times, t_end - 1e-9))
            rows.extend((float(p.imu.times[k]), p.pid, p, k) for k in range(nxt[p.pid], k1))
            nxt[p.pid] = max(nxt[p.pid], k1)
        rows.sort(key=lambda r: (r[0], r[1]))
        for t, _, p, k in rows:
            yield t, "imu", (p, k)

    for scan in iter_scans(scene, full=full, noise_scale=noise_scale):
        yield from imu_until(scan.stamp + 1e-9)
        yield scan.stamp, "scan", scan
    yield from imu_until(scene.duration)


def ground_truth(scene: SceneState, stamp: float) -> list[tuple[int, int, np.ndarray]]:
    """(person id, class id or -1, pelvis position in the sensor frame) of each person at ``stamp``."""
    out = []
    for p in scene.people:
        labels, _ = p.labels_at(np.array([stamp]))
        k = int(p.sample_index(stamp))
        out.append((p.pid, int(labels[0]), scene.lidar.world_to_sensor(p.kin.positions[k, 0])))
    return out


def person_sequence(scene: SceneState, person: Person, stamps: np.ndarray, clouds: list[np.ndarray],
                    layout_sites: tuple[str, ...]) -> Sequence:
    """The store sequence of one person: their cloud per scan, IMU and joints at the scan stamps."""
    labels, texts = person.labels_at(stamps)
    imu15 = person.imu.as_layout()
    imu = resample_imu(person.imu.times, imu15, store_layout(layout_sites), stamps)
    k = person.sample_index(stamps)
    joints = scene.lidar.world_to_sensor(person.kin.positions[k]).astype(np.float32)
    return Sequence(
        sequence_id=f"scene{scene.index:04d}/person_{person.pid}", subject=person.subject,
        fps=scene.lidar.config.rate, timestamps=stamps.astype(np.float64), labels=labels.astype(np.int16),
        text=texts.astype(str), points=clouds, imu=imu, joints=joints,
        scene=f"scene{scene.index:04d}", person=person.pid,
        attrs={"height": person.shape.height, "girth": person.shape.girth, "handed": person.style.handed,
               "source": person.source,
               "lidar": {"beams": scene.lidar.config.beams, "columns": scene.lidar.config.columns,
                         "rate": scene.lidar.config.rate, "mount_xyz": list(scene.lidar.config.mount_xyz),
                         "mount_rpy": list(scene.lidar.config.mount_rpy)}},
    )
