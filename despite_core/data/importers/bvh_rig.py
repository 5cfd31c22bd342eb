"""A BVH rig onto SMPL's 24 joints, and the SMPL-joint kinematics (metres, z up) of a BVH motion.

Mapping (:func:`map_joints`): by name, case-insensitive, namespaces such as ``mixamorig:``
stripped, sides from Left/Right/L/R prefixes or suffixes; covers LaFAN1, CMU (cgspeed), Mixamo,
3ds Max Biped-like and SMPL-named rigs. The spine joints are taken from the chain between pelvis
and neck. Joints the rig lacks are derived and rigidly attached to their SMPL parent's bone (see
:class:`SmplMapping`); the core joints must exist. :func:`bvh_to_kinematics` is what the synthetic
world (``despite synth --bvh``) and the importer use.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from despite_core.data.importers.bvh_format import BvhMotion
from despite_core.data.importers.common import ImporterError, WarningLog
from despite_core.data.store import SMPL_JOINT_NAMES
from despite_core.data.synth.kinematics import SMPL_PARENTS, Kinematics

# Native axes -> ours (x forward, y left, z up). A y-up BVH (LaFAN1, CMU, Mixamo) faces +z at
# rest with +x on the character's left: z -> x (forward), x -> y (left), y -> z (up).
UP_AXIS_TO_Z_UP = {
    "y": np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    "z": np.eye(3),
}
_NATIVE_UP = {"y": np.array([0.0, 1.0, 0.0]), "z": np.array([0.0, 0.0, 1.0])}
_NATIVE_FORWARD = {"y": np.array([0.0, 0.0, 1.0]), "z": np.array([1.0, 0.0, 0.0])}

CORE_JOINTS = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
               "right_ankle", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
               "left_wrist", "right_wrist", "head")

# Candidate base names (lower-case, side removed) per SMPL joint, best first. Several names mean
# different joints in different rigs ("LeftHand" is LaFAN1's wrist but SMPL's hand,
# "LeftShoulder" is Mixamo's collar but SMPL's shoulder, "LeftFoot" LaFAN1's ankle but SMPL's
# foot): _RESOLVE_ORDER settles them by letting the joint that needs the name most take it first.
_SIDED_ALIASES = {
    "hip": ("upleg", "thigh", "upperleg", "hip"),
    "knee": ("leg", "knee", "lowerleg", "shin", "calf"),
    "ankle": ("ankle", "foot"),
    "foot": ("toebase", "toe", "toes", "ball", "toe0", "foot"),
    "shoulder": ("arm", "upperarm", "shoulder"),
    "collar": ("collar", "clavicle", "shoulder"),
    "elbow": ("forearm", "elbow", "lowerarm"),
    "wrist": ("wrist", "hand"),
    "hand": ("handmiddle1", "handindex1", "fingerbase", "middle1", "index1", "finger2", "finger1", "hand"),
}
_UNSIDED_ALIASES = {
    "pelvis": ("hips", "pelvis", "hip"),
    "neck": ("neck", "neck1", "neck01"),
    "head": ("head",),
}
_RESOLVE_ORDER = ("pelvis", "head", "neck", "hip", "knee", "ankle", "wrist", "elbow", "shoulder",
                  "collar", "foot", "hand")

# Where derived joints go, from SMPL's mean body (metres): foot 12 cm ahead of and 5 cm below the
# ankle, hand 8 cm beyond the wrist along the forearm, neck 44 % of the way from the shoulders'
# midpoint to the head, spine1/2/3 at 20/45/60 % of pelvis -> neck.
FOOT_FORWARD_M, FOOT_DOWN_M = 0.12, 0.05
HAND_LENGTH_M = 0.08
NECK_FRACTION = 0.44
SPINE_FRACTIONS = {"spine1": 0.2, "spine2": 0.45, "spine3": 0.6}



# ---------------------------------------------------------------------------------------- mapping

def canonical_name(name: str) -> tuple[str, str]:
    """(side "l", "r" or "", base) of a rig joint name, base lower-case alphanumerics.

    ``mixamorig:LeftUpLeg`` -> ("l", "upleg"); ``L_Hip`` / ``UpperLeg_L`` / ``Bip01 L Thigh`` ->
    ("l", ...); ``LHipJoint`` -> ("l", "hipjoint"); ``LowerBack`` -> ("", "lowerback").
    """
    s = re.split(r"[:|]", name)[-1]
    s = re.sub(r"^mixamorig\d*_", "", s, flags=re.IGNORECASE)
    s = re.sub(r"^bip\d*[\s_]+", "", s, flags=re.IGNORECASE)
    tokens = [t for t in re.split(r"[\s_.\-]+", s) if t]
    side = ""
    if len(tokens) > 1 and tokens[0].lower() in ("l", "r"):
        side, tokens = tokens[0].lower(), tokens[1:]
    elif len(tokens) > 1 and tokens[-1].lower() in ("l", "r"):
        side, tokens = tokens[-1].lower(), tokens[:-1]
    joined = "".join(tokens)
    base = re.sub(r"[^a-z0-9]", "", joined.lower())
    if not side:
        for word in ("left", "right"):
            if base.startswith(word) and len(base) > len(word):
                side, base = word[0], base[len(word):]
                break
            if base.endswith(word) and len(base) > len(word):
                side, base = word[0], base[: -len(word)]
                break
    if not side and re.match(r"^[LR][A-Z]", joined):
        # CMU's LHipJoint, LThumb: a capital L/R glued to a capitalised word. ("LowerBack" is not.)
        side, base = joined[0].lower(), base[1:]
    return side, base


@dataclass
class SmplMapping:
    """Which rig joint each SMPL joint comes from.

    ``source[k]``: index into the rig's joints, or -1 where the joint is derived; ``rule[k]`` says
    how (``"Hips"`` or ``"derived: ..."``). ``frame_source[k]`` is the rig joint whose frame a
    derived joint is rigidly attached to and whose rotation it takes: its SMPL parent's, except a
    collar placed mid-clavicle, which rides on the clavicle. ``rest`` (24, 3): rest positions in
    rig units and axes.
    """

    rig_names: list[str]
    source: list[int]
    rule: list[str]
    frame_source: list[int]
    rest: np.ndarray

    def describe(self) -> dict[str, str]:
        """SMPL joint name -> rig joint name or "derived: ..." (JSON-able, for reports)."""
        return dict(zip(SMPL_JOINT_NAMES, self.rule))

    @property
    def derived(self) -> list[str]:
        return [n for n, s in zip(SMPL_JOINT_NAMES, self.source) if s < 0]


def _descendant(parents: np.ndarray, child: int, ancestor: int) -> bool:
    k = int(parents[child])
    while k >= 0:
        if k == ancestor:
            return True
        k = int(parents[k])
    return False


def map_joints(motion: BvhMotion, up_axis: str = "y", unit_scale: float | None = None) -> SmplMapping:
    """Map the rig onto SMPL's 24 joints by name (see module docstring); derive the missing ones.

    ``up_axis`` and ``unit_scale`` (metres per rig unit) place derived feet and hands. Raises
    :class:`ImporterError` listing the rig's joints when a core joint has no match, or when the
    matched limbs do not form parent -> child chains in the hierarchy.
    """
    if up_axis not in _NATIVE_UP:
        raise ImporterError(f"up_axis must be one of {sorted(_NATIVE_UP)}, got {up_axis!r}")
    scale = resolve_unit_scale(motion, unit_scale)
    names = motion.names
    parents = motion.parents
    rest = motion.rest_positions()
    canon = [canonical_name(n) for n in names]
    index = {c: k for k, c in reversed(list(enumerate(canon)))}   # first joint wins on duplicates
    idx = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    src = [-1] * 24
    rule = [""] * 24
    used: set[int] = set()

    def take(smpl: str, side: str, aliases: tuple[str, ...], below: int | None = None) -> None:
        for base in aliases:
            k = index.get((side, base))
            if k is None or k in used:
                continue
            if below is not None and below >= 0 and not _descendant(parents, k, below):
                continue
            src[idx[smpl]], rule[idx[smpl]] = k, names[k]
            used.add(k)
            return

    for part in _RESOLVE_ORDER:
        if part in _UNSIDED_ALIASES:
            take(part, "", _UNSIDED_ALIASES[part])
            continue
        for side, word in (("l", "left"), ("r", "right")):
            below = None
            if part == "hand":
                below = src[idx[f"{word}_wrist"]]
            elif part == "foot":
                below = src[idx[f"{word}_ankle"]]
            take(f"{word}_{part}", side, _SIDED_ALIASES[part], below)

    missing = [n for n in CORE_JOINTS if src[idx[n]] < 0]
    if missing:
        raise ImporterError(
            f"{motion.path}: cannot find the core joint(s) {missing} in the rig; its joints are "
            f"{names}. Known names: LaFAN1 (Hips, LeftUpLeg, LeftLeg, LeftFoot, LeftArm, LeftForeArm, "
            f"LeftHand, Head), CMU, Mixamo and SMPL names; rename the joints or extend the alias table")
    chains = [("pelvis", "left_hip"), ("pelvis", "right_hip"), ("pelvis", "head"),
              ("pelvis", "left_shoulder"), ("pelvis", "right_shoulder")]
    for word in ("left", "right"):
        chains += [(f"{word}_hip", f"{word}_knee"), (f"{word}_knee", f"{word}_ankle"),
                   (f"{word}_shoulder", f"{word}_elbow"), (f"{word}_elbow", f"{word}_wrist")]
    for a, b in chains:
        ka, kb = src[idx[a]], src[idx[b]]
        if not _descendant(parents, kb, ka):
            raise ImporterError(f"{motion.path}: {b} maps to {names[kb]!r}, which is not below {a} "
                                f"({names[ka]!r}) in the hierarchy; the rig's joints are {names}")
    # Collar and neck must lie on the path they stand for, or they are no use.
    for word in ("left", "right"):
        kc, ks = src[idx[f"{word}_collar"]], src[idx[f"{word}_shoulder"]]
        if kc >= 0 and not _descendant(parents, ks, kc):
            src[idx[f"{word}_collar"]], rule[idx[f"{word}_collar"]] = -1, ""
    kn = src[idx["neck"]]
    if kn >= 0 and not (_descendant(parents, src[idx["head"]], kn) and _descendant(parents, kn, src[idx["pelvis"]])):
        src[idx["neck"]], rule[idx["neck"]] = -1, ""

    size = motion.rig_size()
    eps = 1e-4 * max(size, 1e-9)
    pos = np.zeros((24, 3))
    for k in range(24):
        if src[k] >= 0:
            pos[k] = rest[src[k]]
    P = lambda n: pos[idx[n]]          # noqa: E731  (rest position of an SMPL joint)

    if src[idx["neck"]] < 0:
        mid = 0.5 * (P("left_shoulder") + P("right_shoulder"))
        pos[idx["neck"]] = mid + NECK_FRACTION * (P("head") - mid)
        rule[idx["neck"]] = "derived: 44% from mid-shoulders to head"

    # Spine: the rig joints strictly between pelvis and neck (or head), zero-length ones dropped.
    top = src[idx["neck"]] if src[idx["neck"]] >= 0 else src[idx["head"]]
    chain = []
    k = int(parents[top])
    while k >= 0 and k != src[idx["pelvis"]]:
        chain.append(k)
        k = int(parents[k])
    chain.reverse()
    kept: list[int] = []
    prev = P("pelvis")
    for k in chain:
        if np.linalg.norm(rest[k] - prev) > eps and np.linalg.norm(rest[k] - P("neck")) > eps and k not in used:
            kept.append(k)
            prev = rest[k]
    pel, nk = P("pelvis"), P("neck")
    axis = nk - pel
    frac = lambda p: float(np.dot(p - pel, axis) / max(np.dot(axis, axis), 1e-12))  # noqa: E731
    slots = list(SPINE_FRACTIONS)
    assigned: dict[str, int] = {}
    if len(kept) >= 3:
        mid = min(kept[1:-1], key=lambda k: abs(frac(rest[k]) - SPINE_FRACTIONS["spine2"]))
        assigned = {"spine1": kept[0], "spine2": mid, "spine3": kept[-1]}
    elif len(kept) == 2:
        assigned = {"spine1": kept[0], "spine3": kept[1]}
    elif len(kept) == 1:
        best = min(slots, key=lambda s: abs(frac(rest[kept[0]]) - SPINE_FRACTIONS[s]))
        assigned = {best: kept[0]}
    for s, k in assigned.items():
        src[idx[s]], rule[idx[s]] = k, names[k]
        pos[idx[s]] = rest[k]
        used.add(k)
    for s in slots:
        if s in assigned:
            continue
        if s == "spine2" and "spine1" in assigned and "spine3" in assigned:
            pos[idx[s]] = 0.5 * (P("spine1") + P("spine3"))
            rule[idx[s]] = "derived: midway between spine1 and spine3"
        else:
            pos[idx[s]] = pel + SPINE_FRACTIONS[s] * axis
            rule[idx[s]] = f"derived: {SPINE_FRACTIONS[s]:.0%} of pelvis -> neck"

    attach: dict[int, int] = {}   # SMPL joint -> rig joint it rides on, where not its own or its parent's
    for word in ("left", "right"):
        kc, ks = idx[f"{word}_collar"], idx[f"{word}_shoulder"]
        if src[kc] >= 0 and parents[src[kc]] >= 0 and np.linalg.norm(rest[src[kc]] - rest[parents[src[kc]]]) < eps:
            # A zero-length clavicle (CMU) would put the collar on the neck: take the middle of the
            # clavicle bone instead, still moving with it.
            attach[kc] = src[kc]
            rule[kc] = f"derived: middle of {names[src[kc]]} -> {names[src[ks]]} ({names[src[kc]]} has zero length)"
            pos[kc] = 0.5 * (rest[src[kc]] + rest[src[ks]])
            src[kc] = -1

    up = _NATIVE_UP[up_axis]
    left = P("left_hip") - P("right_hip")
    fwd = np.cross(left, up)
    fwd = fwd / np.linalg.norm(fwd) if np.linalg.norm(fwd) > 1e-9 else _NATIVE_FORWARD[up_axis]
    for word in ("left", "right"):
        if src[idx[f"{word}_collar"]] < 0 and idx[f"{word}_collar"] not in attach:
            pos[idx[f"{word}_collar"]] = 0.5 * P(f"{word}_shoulder") + 0.25 * (P("spine3") + P("neck"))
            rule[idx[f"{word}_collar"]] = "derived: between spine3/neck and shoulder"
        if src[idx[f"{word}_foot"]] < 0:
            pos[idx[f"{word}_foot"]] = P(f"{word}_ankle") + (FOOT_FORWARD_M * fwd - FOOT_DOWN_M * up) / scale
            rule[idx[f"{word}_foot"]] = "derived: 12 cm ahead of, 5 cm below the ankle"
        if src[idx[f"{word}_hand"]] < 0:
            d = P(f"{word}_wrist") - P(f"{word}_elbow")
            n = np.linalg.norm(d)
            if n < eps:
                raise ImporterError(f"{motion.path}: {word} elbow and wrist coincide at rest; cannot place the hand")
            pos[idx[f"{word}_hand"]] = P(f"{word}_wrist") + d / n * HAND_LENGTH_M / scale
            rule[idx[f"{word}_hand"]] = "derived: 8 cm beyond the wrist along the forearm"

    frame_source = [0] * 24
    for k in range(24):   # SMPL_PARENTS lists parents before children
        frame_source[k] = src[k] if src[k] >= 0 else attach.get(k, frame_source[SMPL_PARENTS[k]])
    return SmplMapping(names, src, rule, frame_source, pos)


# --------------------------------------------------------------------------------------- convert

def resolve_unit_scale(motion: BvhMotion, unit_scale: float | None = None) -> float:
    """Metres per rig unit: ``unit_scale`` if given, else 0.01 (cm) when the rest pose is larger than
    3 units, else 1 (m). Rigs in other units (CMU cgspeed, inches) need an explicit scale."""
    if unit_scale is not None:
        if not (np.isfinite(unit_scale) and unit_scale > 0):
            raise ImporterError(f"unit_scale must be a positive number of metres per unit, got {unit_scale}")
        return float(unit_scale)
    return 0.01 if motion.rig_size() > 3.0 else 1.0


def _rest_alignment(rest: np.ndarray) -> np.ndarray:
    """(24, 3, 3) per joint: the smallest rotation taking the rig's rest bone direction (from ``rest``, the
    rig's rest joint positions (24, 3) in world axes) onto the procedural body's, transposed."""
    from despite_core.data.synth.body import BodyShape
    from despite_core.data.synth.kinematics import minimal_rotation, rest_bone_directions

    rig_offsets = rest - rest[np.maximum(np.array(SMPL_PARENTS), 0)]
    a = minimal_rotation(rest_bone_directions(rig_offsets), rest_bone_directions(BodyShape().offsets()))
    return np.swapaxes(a, -1, -2)


def bvh_to_kinematics(motion: BvhMotion, unit_scale: float | None = None, up_axis: str = "y", *,
                      mapping: SmplMapping | None = None, log: WarningLog | None = None) -> Kinematics:
    """SMPL-joint :class:`Kinematics` of a BVH motion: world metres, z up, x forward at rest.

    ``unit_scale``: metres per rig unit (None: :func:`resolve_unit_scale`). ``up_axis``: the rig's
    up axis, "y" (LaFAN1, CMU, Mixamo: rotated so that y -> z, z -> x) or "z" (kept).
    Rotations are global joint-to-world in the frame convention of the synthetic bodies
    (kinematics.py: world-aligned in an upright rest pose with the limbs hanging), so the simulated
    IMUs read the same axes as on a procedural body: the rig's rotations are changed into the world
    axes (identity in the rig's rest pose), then each bone's frame is turned by the smallest rotation
    that takes the procedural rest direction of that bone onto the rig's (a T-pose arm: the arm
    lowered). A derived joint rides on its SMPL parent's bone, with that parent's rotation.
    ``mapping``: reuse a :func:`map_joints` result.
    """
    if up_axis not in UP_AXIS_TO_Z_UP:
        raise ImporterError(f"{motion.path}: up_axis must be one of {sorted(UP_AXIS_TO_Z_UP)}, got {up_axis!r}")
    log = log if log is not None else WarningLog()
    scale = resolve_unit_scale(motion, unit_scale)
    size_m = motion.rig_size() * scale
    if not 0.8 <= size_m <= 2.6:
        suggest = 1.75 / motion.rig_size() if motion.rig_size() > 0 else float("nan")
        log.warn(f"{motion.path}: the rest pose spans {size_m:.3g} m at {scale:g} m/unit, implausible for a "
                 f"person; pass the rig's unit (--unit-scale, e.g. {suggest:.3g} for a 1.75 m body)",
                 kind="implausible body size")
    if mapping is None:
        mapping = map_joints(motion, up_axis, scale)
    pos, rot = motion.forward_kinematics()                       # (F, J, 3), (F, J, 3, 3)
    fs = np.array(mapping.frame_source)
    r = rot[:, fs]                                               # (F, 24, 3, 3)
    rest_rig = motion.rest_positions()
    offset = mapping.rest - rest_rig[fs]                         # (24, 3); zero for mapped joints
    p = pos[:, fs] + np.einsum("fkij,kj->fki", r, offset)        # (F, 24, 3) rig units and axes
    m = UP_AXIS_TO_Z_UP[up_axis]
    positions = scale * np.einsum("ij,fkj->fki", m, p)
    rotations = np.einsum("ij,fkjl,ml->fkim", m, r, m) @ _rest_alignment(mapping.rest @ m.T)
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(rotations))):
        # Finite but huge offsets or position channels (1e308 rig units) overflow on the way.
        bad = ~np.isfinite(positions).all(axis=(1, 2)) | ~np.isfinite(rotations).all(axis=(1, 2, 3))
        f = int(np.argmax(bad))
        raise ImporterError(f"{motion.path}: frame {f}: the joint positions overflow (OFFSET or channel "
                            f"values too large: the largest is {_largest(motion):.3g})")
    return Kinematics(times=motion.times, positions=positions, rotations=rotations)


def _largest(motion: BvhMotion) -> float:
    offsets = [np.abs(j.offset).max() for j in motion.joints] + [np.abs(o).max() for _, o in motion.end_sites]
    return float(max(offsets + [np.abs(motion.values).max() if motion.values.size else 0.0]))
