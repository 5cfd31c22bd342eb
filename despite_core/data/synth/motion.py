"""Procedural activities: parameterised joint-angle generators chained with smooth transitions.

Each activity maps segment-local time to pose channels (see body.POSE_CHANNELS) plus root motion
(forward speed, yaw rate). Every generator has per-segment parameters (speed, amplitude,
frequency, handedness, direction) and sees a per-person style, so two people doing the same
activity look different. Sequences alternate activities under a small grammar (sit down leads to
sitting, sitting ends with stand up) and blend 0.3-0.6 s between segments.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from despite_core.data.synth.body import CH, POSE_CHANNELS

CLASS_NAMES = (
    "stand", "walk", "run", "jump", "squat", "sit down", "sitting", "stand up", "wave", "clap",
    "punch", "kick", "bend to pick up", "turn in place", "jumping jacks",
)
FALL_CLASSES = ("fall", "lying", "get up")   # world edition 2 (WorldConfig.edition)
EDITIONS = (1, 2)
SEATED_START = {"sitting", "stand up"}     # activities that begin seated
SEATED_END = {"sit down", "sitting"}       # activities that end seated
MOVING = {"walk", "run"}                   # activities that translate the body through the room
LYING_START = {"lying", "get up"}          # activities that begin lying (edition 2)
TAU = 2 * np.pi
SEAT_DROP = 0.45                           # pelvis lowering when seated, m (for a 1.75 m body)
LYING_POSES = ("back", "front", "left side", "right side")


def class_names(edition: int = 1) -> tuple[str, ...]:
    """The activity classes of a world edition: 1 = the 15 base classes, 2 = these + fall, lying, get up.

    Edition 2 appends, so a class id means the same activity in both.
    """
    if edition not in EDITIONS:
        raise ValueError(f"world edition must be one of {EDITIONS}, got {edition!r}")
    return CLASS_NAMES + (FALL_CLASSES if edition >= 2 else ())


@dataclass(frozen=True)
class Style:
    """How one person moves, constant over their sequences."""

    speed: float = 1.0          # multiplies walking/running speed
    tempo: float = 1.0          # multiplies every cyclic frequency
    amplitude: float = 1.0      # multiplies joint excursions
    arm_swing: float = 1.0
    lean: float = 0.0           # habitual forward lean, rad
    handed: str = "right"
    jitter: float = 0.03        # band-limited joint-angle noise amplitude, rad

    @classmethod
    def random(cls, rng: np.random.Generator, variation: float = 1.0) -> "Style":
        v = variation
        return cls(
            speed=float(1 + rng.uniform(-0.2, 0.2) * v), tempo=float(1 + rng.uniform(-0.15, 0.15) * v),
            amplitude=float(1 + rng.uniform(-0.2, 0.2) * v), arm_swing=float(1 + rng.uniform(-0.5, 0.5) * v),
            lean=float(rng.uniform(-0.05, 0.12) * v), handed="left" if rng.random() < 0.15 else "right",
            jitter=float(0.02 + 0.04 * v * rng.random()),
        )


@dataclass
class Segment:
    """One activity over [start, start + duration) seconds with its drawn parameters."""

    activity: str
    start: float
    duration: float
    params: dict[str, float] = field(default_factory=dict)
    text: str = ""

    @property
    def end(self) -> float:
        return self.start + self.duration


def _smooth(x: np.ndarray) -> np.ndarray:
    """Smoothstep on [0, 1] (zero slope at both ends)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def base_pose(n: int, style: Style) -> np.ndarray:
    """Relaxed standing pose (n, C)."""
    p = np.zeros((n, len(POSE_CHANNELS)))
    p[:, CH["spine_pitch"]] = style.lean
    for s in ("l", "r"):
        p[:, CH[f"{s}_sh_abd"]] = 0.12
        p[:, CH[f"{s}_elbow"]] = 0.2
        p[:, CH[f"{s}_knee"]] = 0.05
        p[:, CH[f"{s}_hip_flex"]] = 0.02
    return p


def seated_pose(p: np.ndarray, w: np.ndarray, scale: float) -> None:
    """Blend the pose ``p`` (n, C) toward sitting by weight ``w`` (n,) in place."""
    p[:, CH["dz"]] += -SEAT_DROP * scale * w
    for s in ("l", "r"):
        p[:, CH[f"{s}_hip_flex"]] += 1.45 * w
        p[:, CH[f"{s}_knee"]] += 1.45 * w
        p[:, CH[f"{s}_sh_flex"]] += 0.35 * w
        p[:, CH[f"{s}_elbow"]] += 0.9 * w
    p[:, CH["spine_pitch"]] += 0.1 * w


def _key(style: Style, **channels: float) -> np.ndarray:
    """A key pose (C,): channel offsets from the relaxed standing pose; the standing lean removed
    when the body is not upright."""
    k = np.zeros(len(POSE_CHANNELS))
    for name, v in channels.items():
        if name in ("hip_flex", "hip_abd", "knee", "ankle", "sh_flex", "sh_abd", "sh_rot", "elbow"):
            k[CH[f"l_{name}"]] += v
            k[CH[f"r_{name}"]] += v
        else:
            k[CH[name]] += v
    return k


def lying_key(style: Style, pose: str) -> np.ndarray:
    """Lying on the floor (or a bed): on the back, face down, or on a side with the knees drawn up."""
    h = np.pi / 2
    if pose == "back":
        return _key(style, pelvis_pitch=-h, spine_pitch=-style.lean, neck_pitch=0.15, sh_abd=0.15, elbow=0.1)
    if pose == "front":
        return _key(style, pelvis_pitch=h, spine_pitch=-style.lean, neck_pitch=-0.4, sh_abd=0.3, elbow=0.05,
                    ankle=-1.2)
    if pose in ("left side", "right side"):
        return _key(style, pelvis_roll=h if pose == "right side" else -h, spine_pitch=0.2, hip_flex=0.6, knee=0.9,
                    sh_flex=0.9, elbow=0.8)
    raise ValueError(f"unknown lying pose {pose!r}; known: {LYING_POSES}")


def _floor_keys(style: Style, pose: str) -> list[np.ndarray]:
    """Getting up from the floor: from the back via sitting up, from the front or a side via hands and knees,
    then a crouch, then standing."""
    lying = lying_key(style, pose)
    sit = _key(style, hip_flex=1.55, spine_pitch=0.3, sh_flex=0.3, elbow=0.3, ankle=0.3)
    fours = _key(style, pelvis_pitch=1.35, spine_pitch=-style.lean, hip_flex=1.5, knee=1.6, sh_flex=1.45, ankle=-1.3)
    crouch = _key(style, hip_flex=1.9, knee=2.1, spine_pitch=0.6, ankle=0.5, sh_flex=0.6, elbow=0.4)
    return [lying, sit if pose == "back" else fours, crouch, np.zeros(len(POSE_CHANNELS))]


def _through_keys(tau: np.ndarray, at: list[float], keys: list[np.ndarray], ease) -> np.ndarray:
    """Pose offsets (n, C) moving through ``keys`` reached at local times ``at`` (s), eased per piece."""
    out = np.empty((len(tau), len(keys[0])))
    out[:] = keys[0]
    for k in range(1, len(keys)):
        u = ease((tau - at[k - 1]) / max(at[k] - at[k - 1], 1e-6))
        sel = tau >= at[k - 1]
        out[sel] = keys[k - 1] + u[sel, None] * (keys[k] - keys[k - 1])
    return out


def _toppling(x: np.ndarray) -> np.ndarray:
    """A body tipping over under gravity: slow at first, fastest at impact (0 -> 1 on [0, 1])."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (1.6 - 0.6 * x)


def draw_params(activity: str, rng: np.random.Generator) -> dict[str, float]:
    """Per-segment parameters of one activity."""
    u = rng.uniform
    if activity in FALL_CLASSES:   # edition 2; drawn apart so that edition 1's draws stay as they were
        return _fall_params(activity, rng)
    side = float(rng.random() < 0.5)
    return {
        "stand": {"sway": u(0.01, 0.04)},
        "walk": {"speed": u(0.8, 1.6), "amp": u(0.8, 1.2)},
        "run": {"speed": u(2.2, 3.5), "amp": u(0.85, 1.15)},
        "jump": {"height": u(0.15, 0.35), "period": u(0.8, 1.3)},
        "squat": {"depth": u(0.6, 1.0), "period": u(2.0, 3.2), "arms": float(rng.random() < 0.6)},
        "sit down": {"speed": u(0.8, 1.3)},
        "sitting": {"fidget": u(0.0, 0.3)},
        "stand up": {"speed": u(0.8, 1.3)},
        "wave": {"freq": u(1.5, 2.8), "both": float(rng.random() < 0.25), "height": u(0.8, 1.0), "side": side},
        "clap": {"freq": u(1.8, 3.2), "height": u(0.9, 1.5)},
        "punch": {"freq": u(1.0, 2.0), "reach": u(0.8, 1.0)},
        "kick": {"period": u(1.0, 1.6), "height": u(0.7, 1.3), "side": side},
        "bend to pick up": {"period": u(2.5, 4.0), "depth": u(0.8, 1.2), "squat": u(0.0, 0.5)},
        "turn in place": {"rate": u(0.8, 1.8) * (1 if rng.random() < 0.5 else -1)},
        "jumping jacks": {"freq": u(0.9, 1.5)},
    }[activity]


def _fall_params(activity: str, rng: np.random.Generator) -> dict[str, float]:
    """Falls: the pose the person ends in (index into LYING_POSES; forward falls most often), when
    balance is lost (s), how long the descent takes (s), whether the knees buckle first; ``bed`` = 1
    when lying on a bed (set by the plan)."""
    u = rng.uniform
    if activity == "fall":
        return {"pose": float(rng.choice(4, p=[0.3, 0.4, 0.15, 0.15])), "onset": u(0.15, 0.4),
                "descent": u(0.55, 0.9), "collapse": float(rng.random() < 0.35), "bed": 0.0}
    if activity == "lying":
        return {"pose": float(rng.choice(4)), "fidget": u(0.0, 0.4), "bed": 0.0}
    return {"pose": float(rng.choice(4)), "speed": u(0.75, 1.3), "bed": 0.0,
            "turn": 1.0 if rng.random() < 0.5 else -1.0}


def activity_pose(seg: Segment, tau: np.ndarray, style: Style, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose channels (n, C), forward speed (n,) m/s and yaw rate (n,) rad/s of ``seg`` at local times ``tau`` (s).

    ``scale``: stature / 1.75, so vertical excursions follow the body. Generators hold their final
    pose past the segment's end (used while blending into the next segment).
    """
    a, pr = seg.activity, seg.params
    n = tau.shape[0]
    p = base_pose(n, style)
    speed = np.zeros(n)
    yaw = np.zeros(n)
    amp = style.amplitude
    hand = "r" if style.handed == "right" else "l"
    other = "l" if hand == "r" else "r"

    def ch(name: str) -> np.ndarray:
        return p[:, CH[name]]

    if a == "stand":
        w = TAU * 0.25 * style.tempo
        p[:, CH["spine_roll"]] += pr["sway"] * np.sin(w * tau)
        p[:, CH["pelvis_roll"]] += 0.5 * pr["sway"] * np.sin(w * tau + 1)
    elif a in ("walk", "run"):
        run = a == "run"
        v = pr["speed"] * style.speed
        # Cadence grows with speed (about 0.9 Hz stride at 1.2 m/s walking, 1.4 Hz running).
        f = (0.75 + 0.12 * v if not run else 1.15 + 0.1 * v) * style.tempo
        ph = TAU * f * tau
        hip_a = (0.35 if not run else 0.6) * pr["amp"] * amp
        knee_a = (0.65 if not run else 1.4) * pr["amp"] * amp
        ramp = _smooth(tau / 0.6)           # accelerate from rest
        speed = v * ramp
        for s, off in (("l", 0.0), ("r", np.pi)):
            p[:, CH[f"{s}_hip_flex"]] += ramp * hip_a * np.sin(ph + off)
            p[:, CH[f"{s}_knee"]] += ramp * knee_a * np.clip(np.sin(ph + off + 1.3), 0, None) ** 1.5
            p[:, CH[f"{s}_ankle"]] += ramp * 0.2 * np.sin(ph + off + 0.5)
            # Arms swing opposite to the legs.
            p[:, CH[f"{s}_sh_flex"]] += ramp * style.arm_swing * (0.3 if not run else 0.6) * amp * np.sin(ph + off + np.pi)
            p[:, CH[f"{s}_elbow"]] += (0.2 if not run else 1.3) * ramp
        p[:, CH["dz"]] += -(0.02 if not run else 0.05) * scale * np.abs(np.cos(ph)) * ramp
        p[:, CH["spine_pitch"]] += (0.03 if not run else 0.18) * ramp
        p[:, CH["spine_yaw"]] += 0.12 * np.sin(ph) * ramp
    elif a == "jump":
        period = pr["period"] / style.tempo
        x = (tau % period) / period           # crouch 0-0.35, flight 0.35-0.65, land 0.65-1
        crouch = np.exp(-((x - 0.25) / 0.12) ** 2) + 0.7 * np.exp(-((x - 0.8) / 0.1) ** 2)
        flight = np.clip(np.sin(np.pi * (x - 0.35) / 0.3), 0, None) * ((x > 0.35) & (x < 0.65))
        p[:, CH["dz"]] += scale * (pr["height"] * flight - 0.2 * crouch)
        for s in ("l", "r"):
            p[:, CH[f"{s}_hip_flex"]] += 0.9 * crouch * amp
            p[:, CH[f"{s}_knee"]] += 1.5 * crouch * amp
            p[:, CH[f"{s}_ankle"]] += 0.4 * crouch - 0.5 * flight
            p[:, CH[f"{s}_sh_flex"]] += -0.6 * crouch + 2.2 * flight * amp
        p[:, CH["spine_pitch"]] += 0.4 * crouch
    elif a == "squat":
        period = pr["period"] / style.tempo
        d = pr["depth"] * (0.5 - 0.5 * np.cos(TAU * tau / period))
        p[:, CH["dz"]] += -0.42 * scale * d
        for s in ("l", "r"):
            p[:, CH[f"{s}_hip_flex"]] += 1.6 * d * amp
            p[:, CH[f"{s}_knee"]] += 1.9 * d * amp
            p[:, CH[f"{s}_ankle"]] += 0.5 * d
            p[:, CH[f"{s}_sh_flex"]] += 1.4 * d * pr["arms"]
        p[:, CH["spine_pitch"]] += 0.5 * d
    elif a in ("sit down", "stand up", "sitting"):
        if a == "sitting":
            w = np.ones(n)
            p[:, CH["spine_pitch"]] += pr["fidget"] * 0.2 * np.sin(TAU * 0.2 * tau)
            p[:, CH[f"{hand}_sh_flex"]] += pr["fidget"] * (0.5 + 0.5 * np.sin(TAU * 0.3 * tau))
        else:
            dur = 1.6 / pr["speed"]
            w = _smooth(tau / dur)
            if a == "stand up":
                w = 1 - w
            # Lean forward to move the weight over the feet while the hips travel.
            p[:, CH["spine_pitch"]] += 0.6 * np.sin(np.pi * np.clip(tau / dur, 0, 1))
        seated_pose(p, w, scale)
    elif a == "wave":
        f = pr["freq"] * style.tempo
        side = hand if pr["side"] < 0.5 else other
        arms = ("l", "r") if pr["both"] > 0.5 else (side,)
        up = _smooth(tau / 0.5)
        for s in arms:
            p[:, CH[f"{s}_sh_abd"]] += up * (2.2 * pr["height"])
            p[:, CH[f"{s}_elbow"]] += up * (0.6 + 0.45 * np.sin(TAU * f * tau)) * amp
            p[:, CH[f"{s}_sh_rot"]] += up * 0.25 * np.sin(TAU * f * tau)
    elif a == "clap":
        f = pr["freq"] * style.tempo
        up = _smooth(tau / 0.4)
        c = 0.5 + 0.5 * np.cos(TAU * f * tau)     # 1 = hands apart, 0 = together
        for s in ("l", "r"):
            p[:, CH[f"{s}_sh_flex"]] += up * pr["height"]
            p[:, CH[f"{s}_sh_abd"]] += up * (-0.25 + 0.55 * c * amp) - 0.12 * up
            p[:, CH[f"{s}_elbow"]] += up * 0.5
    elif a == "punch":
        f = pr["freq"] * style.tempo
        x = (tau * f) % 1.0
        guard = _smooth(tau / 0.3)
        for s, off in ((hand, 0.0), (other, 0.5)):
            hit = np.exp(-(((x - off) % 1.0 - 0.15) / 0.09) ** 2)
            p[:, CH[f"{s}_sh_flex"]] += guard * (0.9 + 0.6 * hit * pr["reach"])
            p[:, CH[f"{s}_elbow"]] += guard * (1.9 - 1.8 * hit * pr["reach"])
            p[:, CH[f"{s}_sh_abd"]] += -0.1 * guard
        p[:, CH["spine_yaw"]] += 0.25 * np.sin(TAU * f * tau)
    elif a == "kick":
        period = pr["period"] / style.tempo
        x = (tau % period) / period
        k = np.exp(-((x - 0.45) / 0.13) ** 2)
        chamber = np.exp(-((x - 0.3) / 0.1) ** 2)
        leg = hand if pr["side"] < 0.5 else other
        p[:, CH[f"{leg}_hip_flex"]] += (1.25 * k * pr["height"] + 0.9 * chamber) * amp
        p[:, CH[f"{leg}_knee"]] += 1.4 * chamber - 0.05 * k
        p[:, CH["spine_pitch"]] += -0.2 * k
        for s in ("l", "r"):
            p[:, CH[f"{s}_sh_abd"]] += 0.3 * k
    elif a == "bend to pick up":
        period = pr["period"] / style.tempo
        d = _smooth(np.clip(1.6 * np.sin(np.pi * (tau % period) / period), 0, 1))
        p[:, CH["spine_pitch"]] += 1.1 * d * pr["depth"]
        for s in ("l", "r"):
            p[:, CH[f"{s}_hip_flex"]] += (0.5 + 0.8 * pr["squat"]) * d
            p[:, CH[f"{s}_knee"]] += (0.2 + 1.2 * pr["squat"]) * d
            p[:, CH[f"{s}_sh_flex"]] += 0.9 * d
        p[:, CH["dz"]] += -0.25 * scale * pr["squat"] * d
        p[:, CH[f"{hand}_sh_flex"]] += 0.4 * d
    elif a == "turn in place":
        f = 1.6 * style.tempo
        yaw = pr["rate"] * _smooth(tau / 0.4)
        for s, off in (("l", 0.0), ("r", np.pi)):
            step = np.clip(np.sin(TAU * f * tau + off), 0, None)
            p[:, CH[f"{s}_hip_flex"]] += 0.25 * step
            p[:, CH[f"{s}_knee"]] += 0.45 * step
    elif a == "jumping jacks":
        f = pr["freq"] * style.tempo
        c = 0.5 - 0.5 * np.cos(TAU * f * tau)       # 0 = closed, 1 = open
        hop = np.abs(np.sin(TAU * f * tau))
        p[:, CH["dz"]] += 0.07 * scale * hop
        for s in ("l", "r"):
            p[:, CH[f"{s}_sh_abd"]] += 2.6 * c * amp
            p[:, CH[f"{s}_hip_abd"]] += 0.3 * c
            p[:, CH[f"{s}_knee"]] += 0.25 * (1 - hop)
    elif a == "fall":
        pose = LYING_POSES[int(pr["pose"])]
        t0, t1 = pr["onset"], pr["onset"] + pr["descent"]
        stagger = _key(style, spine_pitch=0.25 if pose != "back" else -0.2, sh_abd=0.5, sh_flex=0.5, knee=0.25)
        if pr["collapse"] > 0.5:  # the knees give way first, then the body tips over
            mid = _key(style, hip_flex=1.2, knee=1.8, spine_pitch=0.4, sh_abd=0.4)
        else:  # a topple: rigid, arms thrown out to break the fall
            mid = 0.45 * lying_key(style, pose) + _key(style, sh_flex=1.4 if pose == "front" else 0.6, sh_abd=0.6,
                                                       knee=0.4)
        keys = [np.zeros(len(POSE_CHANNELS)), stagger, mid, lying_key(style, pose)]
        p += _through_keys(tau, [0.0, t0, t0 + 0.5 * (t1 - t0), t1], keys, _toppling)
    elif a == "lying":
        pose = LYING_POSES[int(pr["pose"])]
        p += lying_key(style, pose)
        p[:, CH["spine_pitch"]] += 0.015 * np.sin(TAU * 0.25 * tau)          # breathing
        p[:, CH[f"{hand}_sh_flex"]] += pr["fidget"] * (0.5 - 0.5 * np.cos(TAU * 0.15 * tau))
        if pr["bed"] > 0:
            p[:, CH["dz"]] += bed_lying_dz(scale)
    elif a == "get up":
        pose = LYING_POSES[int(pr["pose"])]
        dur = 3.0 / pr["speed"]
        if pr["bed"] > 0:  # sit up on the bed's edge, turning the legs off it, then stand up as from a seat
            sitting = seated_key(style, scale)
            keys = [lying_key(style, "back") + _key(style, dz=bed_lying_dz(scale)), sitting, sitting,
                    np.zeros(len(POSE_CHANNELS))]
            at = [0.0, 0.45 * dur, 0.55 * dur, dur]
            yaw = np.where(tau < 0.45 * dur, pr["turn"] * (np.pi / 2) / (0.45 * dur), 0.0)
        else:
            keys = _floor_keys(style, pose)
            at = [0.0, 0.35 * dur, 0.7 * dur, dur]
        p += _through_keys(tau, at, keys, _smooth)
    else:
        raise ValueError(f"unknown activity {a!r}; known: {class_names(2)}")
    return p, speed, yaw


def bed_lying_dz(scale: float) -> float:
    """Pelvis lowering (m) when lying on a bed at seat height (the seat box of a seated person)."""
    return -SEAT_DROP * scale - 0.1 + 0.12 * scale


def seated_key(style: Style, scale: float) -> np.ndarray:
    """The seated pose as a key (C,) (see seated_pose)."""
    k = np.zeros((1, len(POSE_CHANNELS)))
    seated_pose(k, np.ones(1), scale)
    return k[0]


def plan_segments(duration: float, rng: np.random.Generator, *, min_len: float = 2.0, max_len: float = 7.0,
                  start_seated: bool = False, weights: dict[str, float] | None = None, edition: int = 1,
                  start_on_bed: bool = False) -> list[Segment]:
    """A sequence of activity segments covering ``duration`` s, obeying the sit/stand grammar.

    Edition 2 adds falls: any standing activity may be followed by ``fall``, which leads to
    ``lying`` (in the pose the fall ended in) and then ``get up``; ``start_on_bed`` begins the
    sequence lying on a bed, then getting up from it. Edition 1 draws exactly what it always drew.
    """
    names = class_names(edition)
    segs: list[Segment] = []
    t = 0.0
    seated = start_seated
    lying = start_on_bed
    w = {a: 1.0 for a in names}
    w.update({"walk": 2.0, "stand": 1.2})
    if edition >= 2:
        w["fall"] = 1.0
    if weights:
        w.update(weights)
    while t < duration - 1e-9:
        if lying:
            prev = segs[-1].activity if segs else None
            choices = ["get up"] if prev == "lying" else ["lying"]
        elif seated:
            choices = ["sitting", "stand up"]
        else:
            choices = [a for a in names if a not in SEATED_START and a not in LYING_START]
        if segs and not lying:  # no immediate repetition of a standing activity: more transitions to learn
            prev = segs[-1].activity
            if prev in choices and len(choices) > 2:
                choices.remove(prev)
        probs = np.array([w[c] for c in choices])
        act = str(rng.choice(choices, p=probs / probs.sum()))
        if act in ("sit down", "stand up"):
            length = rng.uniform(2.4, 3.5)
        elif act == "fall":
            length = rng.uniform(1.3, 2.0)      # from losing balance to lying still: at least half a window
        elif act == "get up":
            length = rng.uniform(2.6, 4.0)
        elif act == "lying":
            length = rng.uniform(3.0, 10.0)
        else:
            length = rng.uniform(min_len, max_len)
        length = min(length, duration - t) if duration - t > 1.0 else duration - t
        params = draw_params(act, rng)
        if act in LYING_START:   # lie and get up in the pose the fall ended in (or on the bed)
            if segs:
                params.update(pose=segs[-1].params["pose"], bed=segs[-1].params["bed"])
            else:
                params.update(pose=0.0, bed=1.0)
            if act == "get up":
                params["speed"] = max(params["speed"], 3.0 / max(length, 1e-6))   # up by the segment's end
        segs.append(Segment(act, t, float(length), params))
        t += length
        if act in SEATED_END:
            seated = True
        if act == "stand up":
            seated = False
        if act == "fall":
            lying = True
        if act == "get up":
            lying = False
    return segs


def band_noise(n: int, rate: float, channels: int, rng: np.random.Generator, cutoff: float = 1.5) -> np.ndarray:
    """Smooth random signals (n, channels), unit std, band-limited to about ``cutoff`` Hz."""
    k = max(int(rate / cutoff), 1)
    coarse = rng.normal(size=(n // k + 4, channels))
    x = np.arange(n) / k
    i = np.floor(x).astype(int)
    u = x - i
    # Cubic (Catmull-Rom) interpolation of a coarse white sequence: smooth and cheap.
    p0, p1, p2, p3 = coarse[i], coarse[i + 1], coarse[i + 2], coarse[i + 3]
    u = u[:, None]
    out = 0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * u**3)
    return out / max(float(out.std()), 1e-9)


def synthesize_pose(segments: list[Segment], times: np.ndarray, style: Style, scale: float,
                    rng: np.random.Generator, blend: float = 0.45) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pose channels (N, C), speed (N,), yaw rate (N,) and per-sample segment index (N,) over ``times``.

    Segment k is blended in over its first ``blend`` seconds from segment k-1 held past its end.
    """
    n = len(times)
    pose = np.zeros((n, len(POSE_CHANNELS)))
    speed = np.zeros(n)
    yaw = np.zeros(n)
    seg_idx = np.zeros(n, dtype=np.int64)
    for k, seg in enumerate(segments):
        sel = (times >= seg.start - 1e-9) & (times < seg.end - 1e-9) if k < len(segments) - 1 else times >= seg.start - 1e-9
        if not np.any(sel):
            continue
        tau = times[sel] - seg.start
        p, v, w = activity_pose(seg, tau, style, scale)
        if k > 0:
            prev = segments[k - 1]
            bl = min(blend, 0.5 * seg.duration)
            wgt = _smooth(tau / bl)[:, None] if bl > 0 else np.ones((len(tau), 1))
            pp, pv, pw = activity_pose(prev, tau + prev.duration, style, scale)
            p = wgt * p + (1 - wgt) * pp
            v = wgt[:, 0] * v + (1 - wgt[:, 0]) * pv
            w = wgt[:, 0] * w + (1 - wgt[:, 0]) * pw
        pose[sel], speed[sel], yaw[sel] = p, v, w
        seg_idx[sel] = k
    rate = 1.0 / float(np.median(np.diff(times))) if n > 1 else 100.0
    noise = band_noise(n, rate, len(POSE_CHANNELS), rng) * style.jitter
    noise[:, CH["dz"]] *= 0.1  # metres, not radians: keep vertical jitter to a few mm
    pose += noise
    return pose, speed, yaw, seg_idx
