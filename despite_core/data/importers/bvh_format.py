"""BVH motion capture files: the parser and the hierarchy's own forward kinematics (rig units and
axes). Mapping a rig onto SMPL's joints is :mod:`.bvh_rig`; the `despite import bvh` command is
:mod:`.bvh`.

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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from despite_core.data.importers.common import ImporterError
from despite_core.data.rotations import rot_x, rot_y, rot_z

_CHANNELS = {c.lower(): c for c in ("Xposition", "Yposition", "Zposition",
                                     "Xrotation", "Yrotation", "Zrotation")}
_ROT = {"x": rot_x, "y": rot_y, "z": rot_z}


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


def as_float(tok: str, where: str, what: str) -> float:
    try:
        return float(tok)
    except ValueError:
        raise ImporterError(f"{where}: {what} {tok!r} is not a number") from None


def parse_bvh(text: str, path: str = "<string>") -> BvhMotion:
    """Parse BVH text. Errors name ``path`` and the line (and frame for motion rows)."""
    lines = text.splitlines()
    joints: list[BvhJoint] = []
    names: set[str] = set()                # joint names so far (a rig may have 10^5 joints)
    end_sites: list[tuple[int, np.ndarray]] = []
    stack: list[tuple[str, int]] = []      # ("joint", index) or ("end", index into end_sites)
    with_channels: set[int] = set()        # joints whose CHANNELS line has been read
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
                if name in names:
                    raise ImporterError(f"{where}: joint name {name!r} used twice")
                parent = stack[-1][1] if stack else -1
                joints.append(BvhJoint(name, parent, np.zeros(3)))
                names.add(name)
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
                off = np.array([as_float(t, where, "OFFSET value") for t in toks[k + 1:k + 4]])
                if not np.all(np.isfinite(off)):
                    raise ImporterError(f"{where}: OFFSET {' '.join(toks[k + 1:k + 4])} is not finite")
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
                listed = toks[k + 2:k + 2 + n]
                if len(listed) != n:
                    raise ImporterError(f"{where}: CHANNELS {n} lists {len(listed)} channel names on its line")
                canon = []
                for c in listed:
                    if c.lower() not in _CHANNELS:
                        raise ImporterError(f"{where}: unknown channel {c!r}; known: {sorted(_CHANNELS.values())}")
                    canon.append(_CHANNELS[c.lower()])
                if len(set(canon)) != len(canon):
                    raise ImporterError(f"{where}: a channel is listed twice in {listed}")
                j = joints[stack[-1][1]]
                if stack[-1][1] in with_channels:
                    # a second CHANNELS line would leave the first one's columns unaccounted for
                    raise ImporterError(f"{where}: joint {j.name!r} has a second CHANNELS line")
                with_channels.add(stack[-1][1])
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
    frame_time = as_float(header["frame time"], f"{path}: MOTION", "Frame Time")
    if not (frame_time > 0 and np.isfinite(frame_time) and np.isfinite(1.0 / frame_time)):
        raise ImporterError(f"{path}: Frame Time must be a positive number of seconds with a finite "
                            f"frame rate, got {header['frame time']!r}")
    if n_frames < 1:
        raise ImporterError(f"{path}: 'Frames: {n_frames}': a motion needs at least one frame")
    if not np.isfinite(frame_time * (n_frames - 1)):
        raise ImporterError(f"{path}: {n_frames} frames of {frame_time:g} s overflow the clock")

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
                as_float(t, f"{path}: line {ln} (frame {f})", "channel value")
        raise ImporterError(f"{path}: the motion rows do not read as {n_frames} x {n_channels} numbers")
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
