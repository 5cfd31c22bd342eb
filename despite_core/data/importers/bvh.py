"""BVH motion capture: a parser, forward kinematics, and the mapping onto SMPL's 24 joints.

``despite import bvh FILES... --out STORE [--labels CSV]`` writes a joints-only store; the
synthetic world calls :func:`load_bvh` and :func:`bvh_to_kinematics` to drive its sensor models
with real mocap.

BVH conventions implemented (as Biovision's format, Blender and the LaFAN1 tools read it):

- HIERARCHY: ROOT / JOINT blocks with OFFSET (translation from the parent joint, rig units),
  CHANNELS (any count and order of X/Y/Zposition and X/Y/Zrotation, on any joint), End Site
  blocks (an OFFSET only). Several ROOTs are allowed.
- MOTION: ``Frames: N``, ``Frame Time: dt`` (s), then N rows with every joint's channels in
  hierarchy order.
- Local transform of a joint: translation = OFFSET with any position channel replacing its
  component; rotation = the Euler angles (degrees) multiplied in the order the channels are
  listed, R = R_c1 @ R_c2 @ R_c3 (intrinsic rotations, ``Zrotation Xrotation Yrotation`` means
  Rz @ Rx @ Ry). Global: R_j = R_parent @ R_local, p_j = p_parent + R_parent @ t_local.

Mapping to SMPL (:func:`map_joints`): by name, case-insensitive, namespaces such as
``mixamorig:`` stripped, sides from Left/Right/L/R prefixes or suffixes; covers LaFAN1, CMU
(cgspeed), Mixamo, 3ds Max Biped-like and SMPL-named rigs. The spine joints are taken from the
chain between pelvis and neck. Joints the rig lacks are derived and rigidly attached to their SMPL
parent's bone (see :class:`SmplMapping`); the core joints must exist.
"""
from __future__ import annotations

import argparse
import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from despite_core.data.importers.common import (
    ImporterError, WarningLog, add_output_arguments, progress, segments_to_frames, store_summary,
    wrap_store_error,
)
from despite_core.data.rotations import rot_x, rot_y, rot_z
from despite_core.data.store import SMPL_JOINT_NAMES, Sequence, StoreError, StoreWriter
from despite_core.data.synth.kinematics import SMPL_PARENTS, Kinematics

_CHANNELS = {c.lower(): c for c in ("Xposition", "Yposition", "Zposition",
                                     "Xrotation", "Yrotation", "Zrotation")}
_ROT = {"x": rot_x, "y": rot_y, "z": rot_z}

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


# ---------------------------------------------------------------------------------------- parsing

@dataclass
class BvhJoint:
    """One joint of the hierarchy. ``channels`` canonical names ("Zrotation"), in file order."""

    name: str
    parent: int                      # index into BvhMotion.joints, -1 for a root
    offset: np.ndarray               # (3,) rig units, from the parent joint
    channels: tuple[str, ...] = ()
    channel_start: int = 0           # column of the first channel in a motion row


@dataclass
class BvhMotion:
    """A parsed BVH file: hierarchy, End Sites and the channel values of every frame.

    ``values`` (frames, channels) float64 as in the file: positions in rig units, angles in degrees.
    """

    path: str
    joints: list[BvhJoint]
    end_sites: list[tuple[int, np.ndarray]]      # (parent joint index, offset (3,))
    frame_time: float
    values: np.ndarray

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def parents(self) -> np.ndarray:
        return np.array([j.parent for j in self.joints], dtype=np.int64)

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def times(self) -> np.ndarray:
        """Frame stamps (frames,) s from 0."""
        return np.arange(self.num_frames, dtype=np.float64) * self.frame_time

    def rest_positions(self) -> np.ndarray:
        """Joint positions (J, 3) with every rotation zero and no position channels: the offsets
        chained. At rest every global rotation is the identity."""
        out = np.zeros((len(self.joints), 3))
        for k, j in enumerate(self.joints):
            out[k] = j.offset + (out[j.parent] if j.parent >= 0 else 0.0)
        return out

    def rest_end_sites(self) -> np.ndarray:
        """End Site positions (E, 3) at rest."""
        rest = self.rest_positions()
        return np.array([rest[p] + o for p, o in self.end_sites]).reshape(-1, 3)

    def forward_kinematics(self) -> tuple[np.ndarray, np.ndarray]:
        """Global joint positions (F, J, 3) (rig units and axes) and rotations (F, J, 3, 3)
        joint-to-world, by the conventions in the module docstring."""
        f, nj = self.num_frames, len(self.joints)
        pos = np.empty((f, nj, 3))
        rot = np.empty((f, nj, 3, 3))
        for k, j in enumerate(self.joints):
            t_local = np.broadcast_to(j.offset, (f, 3)).copy()
            r_local = np.broadcast_to(np.eye(3), (f, 3, 3)).copy()
            for c, ch in enumerate(j.channels):
                col = self.values[:, j.channel_start + c]
                axis = ch[0].lower()
                if ch.endswith("position"):
                    t_local[:, "xyz".index(axis)] = col
                else:
                    r_local = r_local @ _ROT[axis](np.deg2rad(col))
            if j.parent < 0:
                pos[:, k], rot[:, k] = t_local, r_local
            else:
                rp = rot[:, j.parent]
                pos[:, k] = pos[:, j.parent] + np.einsum("fij,fj->fi", rp, t_local)
                rot[:, k] = rp @ r_local
        return pos, rot

    def rig_size(self) -> float:
        """Largest extent (rig units) of the rest pose, End Sites included: ~ stature or arm span."""
        pts = np.concatenate([self.rest_positions(), self.rest_end_sites()])
        return float((pts.max(0) - pts.min(0)).max())


def _float(tok: str, where: str, what: str) -> float:
    try:
        return float(tok)
    except ValueError:
        raise ImporterError(f"{where}: {what} {tok!r} is not a number") from None


def parse_bvh(text: str, path: str = "<string>") -> BvhMotion:
    """Parse BVH text. Errors name ``path`` and the line (and frame for motion rows)."""
    lines = text.splitlines()
    joints: list[BvhJoint] = []
    end_sites: list[tuple[int, np.ndarray]] = []
    stack: list[tuple[str, int]] = []      # ("joint", index) or ("end", index into end_sites)
    pending: tuple[str, int] | None = None
    n_channels = 0
    seen_hierarchy = False
    i = 0
    motion_line = None
    while i < len(lines) and motion_line is None:
        toks = lines[i].split()
        where = f"{path}: line {i + 1}"
        k = 0
        while k < len(toks):
            tok, up = toks[k], toks[k].upper()
            if up == "HIERARCHY":
                seen_hierarchy = True
                k += 1
            elif up in ("ROOT", "JOINT"):
                if not seen_hierarchy:
                    raise ImporterError(f"{where}: {tok} before HIERARCHY")
                rest = toks[k + 1:]
                brace = rest.index("{") if "{" in rest else len(rest)
                name = " ".join(rest[:brace])
                if not name:
                    raise ImporterError(f"{where}: {tok} without a joint name")
                if up == "JOINT" and (not stack or stack[-1][0] != "joint"):
                    raise ImporterError(f"{where}: JOINT {name!r} outside any joint block")
                if up == "ROOT" and stack:
                    raise ImporterError(f"{where}: ROOT {name!r} inside another joint's block")
                if name in (j.name for j in joints):
                    raise ImporterError(f"{where}: joint name {name!r} used twice")
                parent = stack[-1][1] if stack else -1
                joints.append(BvhJoint(name, parent, np.zeros(3)))
                pending = ("joint", len(joints) - 1)
                k += 1 + brace
            elif up == "END":
                if k + 1 >= len(toks) or toks[k + 1].upper() != "SITE":
                    raise ImporterError(f"{where}: 'End' must be followed by 'Site'")
                if not stack or stack[-1][0] != "joint":
                    raise ImporterError(f"{where}: End Site outside any joint block")
                end_sites.append((stack[-1][1], np.zeros(3)))
                pending = ("end", len(end_sites) - 1)
                k += 2
            elif tok == "{":
                if pending is None:
                    raise ImporterError(f"{where}: '{{' without a ROOT, JOINT or End Site before it")
                stack.append(pending)
                pending = None
                k += 1
            elif tok == "}":
                if not stack:
                    raise ImporterError(f"{where}: '}}' closes nothing")
                stack.pop()
                k += 1
            elif up == "OFFSET":
                if not stack:
                    raise ImporterError(f"{where}: OFFSET outside any joint block")
                if len(toks) < k + 4:
                    raise ImporterError(f"{where}: OFFSET needs 3 numbers on its line")
                off = np.array([_float(t, where, "OFFSET value") for t in toks[k + 1:k + 4]])
                kind, idx = stack[-1]
                if kind == "joint":
                    joints[idx].offset = off
                else:
                    end_sites[idx] = (end_sites[idx][0], off)
                k += 4
            elif up == "CHANNELS":
                if not stack or stack[-1][0] != "joint":
                    raise ImporterError(f"{where}: CHANNELS outside a joint block")
                try:
                    n = int(toks[k + 1])
                except (IndexError, ValueError):
                    raise ImporterError(f"{where}: CHANNELS must be followed by a channel count") from None
                names = toks[k + 2:k + 2 + n]
                if len(names) != n:
                    raise ImporterError(f"{where}: CHANNELS {n} lists {len(names)} channel names on its line")
                canon = []
                for c in names:
                    if c.lower() not in _CHANNELS:
                        raise ImporterError(f"{where}: unknown channel {c!r}; known: {sorted(_CHANNELS.values())}")
                    canon.append(_CHANNELS[c.lower()])
                if len(set(canon)) != len(canon):
                    raise ImporterError(f"{where}: a channel is listed twice in {names}")
                j = joints[stack[-1][1]]
                j.channels, j.channel_start = tuple(canon), n_channels
                n_channels += n
                k += 2 + n
            elif up == "MOTION":
                if stack or pending is not None:
                    raise ImporterError(f"{where}: MOTION before the hierarchy's blocks are closed")
                motion_line = i
                break
            else:
                raise ImporterError(f"{where}: unexpected {tok!r} in HIERARCHY")
        i += 1
    if not joints:
        raise ImporterError(f"{path}: no HIERARCHY with a ROOT joint found")
    if motion_line is None:
        raise ImporterError(f"{path}: no MOTION section (hierarchy ends at line {len(lines)})")

    # MOTION header: "Frames: N" and "Frame Time: dt" on their own lines.
    i = motion_line + 1
    header: dict[str, str] = {}
    while i < len(lines) and len(header) < 2:
        s = lines[i].strip()
        i += 1
        if not s:
            continue
        key, sep, value = s.partition(":")
        key = " ".join(key.split()).lower()
        if not sep or key not in ("frames", "frame time"):
            raise ImporterError(f"{path}: line {i}: expected 'Frames:' and 'Frame Time:' after MOTION, got {s!r}")
        header[key] = value.strip()
    if len(header) < 2:
        raise ImporterError(f"{path}: MOTION lacks 'Frames:' or 'Frame Time:'")
    try:
        n_frames = int(header["frames"])
    except ValueError:
        raise ImporterError(f"{path}: 'Frames: {header['frames']}' is not an integer") from None
    frame_time = _float(header["frame time"], f"{path}: MOTION", "Frame Time")
    if not frame_time > 0:
        raise ImporterError(f"{path}: Frame Time must be positive, got {frame_time}")
    if n_frames < 1:
        raise ImporterError(f"{path}: 'Frames: {n_frames}': a motion needs at least one frame")

    rows = [(ln + 1, s) for ln, s in enumerate(lines[i:], start=i) if s.strip()]
    if len(rows) < n_frames:
        raise ImporterError(f"{path}: header says {n_frames} frames, the file has {len(rows)} motion rows")
    rows = rows[:n_frames]  # rows past the declared count are ignored, as other readers do
    try:
        values = np.array(" ".join(s for _, s in rows).split(), dtype=np.float64)
    except ValueError:
        values = None
    if values is None or values.size != n_frames * n_channels:
        for f, (ln, s) in enumerate(rows):
            toks = s.split()
            if len(toks) != n_channels:
                raise ImporterError(f"{path}: line {ln} (frame {f}): {len(toks)} values, the hierarchy "
                                    f"declares {n_channels} channels")
            for t in toks:
                _float(t, f"{path}: line {ln} (frame {f})", "channel value")
        raise AssertionError("unreachable")
    values = values.reshape(n_frames, n_channels)
    if not np.all(np.isfinite(values)):
        f, c = np.argwhere(~np.isfinite(values))[0]
        raise ImporterError(f"{path}: line {rows[f][0]} (frame {f}): channel value {c} is not finite")
    return BvhMotion(path, joints, end_sites, frame_time, values)


def load_bvh(path: str | Path) -> BvhMotion:
    """Read and parse a BVH file (see :func:`parse_bvh`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ImporterError(f"{path}: cannot read ({e.strerror})") from None
    return parse_bvh(text, str(path))


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


def bvh_to_kinematics(motion: BvhMotion, unit_scale: float | None = None, up_axis: str = "y", *,
                      mapping: SmplMapping | None = None, log: WarningLog | None = None) -> Kinematics:
    """SMPL-joint :class:`Kinematics` of a BVH motion: world metres, z up, x forward at rest.

    ``unit_scale``: metres per rig unit (None: :func:`resolve_unit_scale`). ``up_axis``: the rig's
    up axis, "y" (LaFAN1, CMU, Mixamo: rotated so that y -> z, z -> x) or "z" (kept).
    Rotations are global joint-to-world; a derived joint rides on its SMPL parent's bone, with
    that parent's rotation. ``mapping``: reuse a :func:`map_joints` result.
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
    rotations = np.einsum("ij,fkjl->fkil", m, r)
    return Kinematics(times=motion.times, positions=positions, rotations=rotations)


# ----------------------------------------------------------------------------------------- import

@dataclass
class LabelSegment:
    file: str
    start_s: float
    end_s: float
    label: str


def read_label_csv(path: str | Path) -> list[LabelSegment]:
    """Segments from a CSV with the header ``file,start_s,end_s,label`` (times in seconds)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ImporterError(f"{path}: cannot read label CSV ({e.strerror})") from None
    reader = csv.DictReader(text.splitlines())
    need = ["file", "start_s", "end_s", "label"]
    if reader.fieldnames is None or any(c not in [f.strip() for f in reader.fieldnames] for c in need):
        raise ImporterError(f"{path}: label CSV needs the header {','.join(need)}, got {reader.fieldnames}")
    out = []
    for n, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"{path}: line {n}"
        start = _float(row["start_s"], where, "start_s")
        end = _float(row["end_s"], where, "end_s")
        if not end > start:
            raise ImporterError(f"{where}: end_s {end} is not after start_s {start}")
        if not row["label"] or not row["file"]:
            raise ImporterError(f"{where}: empty file or label")
        out.append(LabelSegment(row["file"], start, end, row["label"]))
    return out


def _segments_for(path: Path, segments: list[LabelSegment]) -> list[LabelSegment]:
    keys = {str(path), path.name, path.stem}
    return [s for s in segments if s.file in keys or Path(s.file).name == path.name]


def import_bvh(files: list[str | Path], out: str | Path, *, labels_csv: str | Path | None = None,
               subject: str | None = None, unit_scale: float | None = None, up_axis: str = "y",
               overwrite: bool = False) -> dict[str, Any]:
    """Import BVH files as a joints-only store (SMPL joint order, metres, z up); return the summary.

    One sequence per file, id = file stem (parent folder prepended if stems collide), subject =
    the stem unless ``subject``. Labels from ``labels_csv`` segments, -1 elsewhere.
    """
    paths = [Path(f) for f in files]
    if not paths:
        raise ImporterError("no BVH files given")
    log = WarningLog()
    segments = read_label_csv(labels_csv) if labels_csv is not None else []
    classes = sorted({s.label for s in segments}) or ["unlabelled"]
    stems = [p.stem for p in paths]
    ids = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ImporterError(f"BVH files give the same sequence id twice: {dup}")
    matched_rows = 0
    mappings: dict[str, dict[str, str]] = {}
    with StoreWriter(out, classes, joint_names=SMPL_JOINT_NAMES, source="BVH", overwrite=overwrite,
                     description="BVH mocap mapped to SMPL joints, metres, z up") as writer:
        for path, seq_id in progress(list(zip(paths, ids)), desc="BVH", unit="file"):
            motion = load_bvh(path)
            scale = resolve_unit_scale(motion, unit_scale)
            mapping = map_joints(motion, up_axis, scale)
            kin = bvh_to_kinematics(motion, scale, up_axis, mapping=mapping, log=log)
            segs = _segments_for(path, segments)
            matched_rows += len(segs)
            t = kin.times
            if segs:
                text = segments_to_frames(t, [(s.start_s, s.end_s, s.label) for s in segs], empty="")
                labels = np.array([classes.index(x) if x else -1 for x in text], np.int16)
                text_arr = np.asarray(text, dtype=str)
            else:
                labels, text_arr = np.full(len(t), -1, np.int16), None
            seq = Sequence(
                sequence_id=seq_id, subject=subject or path.stem, fps=motion.fps, timestamps=t,
                labels=labels, text=text_arr, joints=kin.positions.astype(np.float32),
                scene=seq_id, person=1,
                attrs={"file": path.name, "unit_scale": scale, "up_axis": up_axis,
                       "rig_joints": len(motion.joints), "mapping": mapping.describe()},
            )
            try:
                writer.add(seq)
            except StoreError as e:
                raise wrap_store_error(path, e) from None
            mappings[seq_id] = mapping.describe()
    if segments and matched_rows < len(segments):
        log.warn(f"{labels_csv}: {len(segments) - matched_rows} label row(s) name no imported file")
    return store_summary(Path(out), {"format": "bvh", "mappings": mappings, "warnings": log.finish()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``despite import bvh``."""
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="BVH files, one sequence each")
    parser.add_argument("--labels", type=Path, default=None, metavar="CSV",
                        help="label segments: CSV with header file,start_s,end_s,label")
    parser.add_argument("--subject", default=None, help="subject of every sequence (default: the file stem)")
    parser.add_argument("--unit-scale", type=float, default=None, metavar="M",
                        help="metres per rig unit (default auto: 0.01 if the rig is larger than 3 units, else 1)")
    parser.add_argument("--up-axis", choices=sorted(UP_AXIS_TO_Z_UP), default="y",
                        help="the rig's up axis (default y, as LaFAN1/CMU/Mixamo); output is z up, x forward")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``despite import bvh`` from parsed flags; returns the JSON summary."""
    return import_bvh(args.files, args.out, labels_csv=args.labels, subject=args.subject,
                      unit_scale=args.unit_scale, up_axis=args.up_axis, overwrite=args.overwrite)
