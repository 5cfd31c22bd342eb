"""Property-based fuzz tests of the readers of outside input in despite_core.data.importers: BVH
text (bvh_format / bvh_rig / bvh), MSR-Action3D depth files (msr) and LIPD pickles (lipd).

Each reader may only succeed or raise :class:`ImporterError` (the importers' one documented error,
a ValueError naming the file), never another exception, never hang, whatever the bytes. Inputs
start from small valid files written as test_importers.py writes them, then get truncated,
byte-flipped, spliced with garbage tokens, huge numbers, NaN, negative counts and deep nesting.
A LIPD pickle is also a program: hostile and random pickle programs must be refused without
running anything, crashing the interpreter or touching numpy's global state.
"""
from __future__ import annotations

import os
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from despite_core.data.importers import bvh, bvh_format, bvh_rig, lipd, msr
from despite_core.data.importers.common import ImporterError, ImporterWarning
from despite_core.data.store import Store
from helpers.fuzz import fuzz_settings

pytestmark = pytest.mark.filterwarnings("ignore::despite_core.data.importers.common.ImporterWarning",
                                        "ignore::RuntimeWarning")

# The default run is fixed (derandomized) and fast; DESPITE_FUZZ_EXAMPLES=5000 runs a longer,
# randomised campaign with that many examples per test (helpers/fuzz.py, the README's command).
FUZZ = fuzz_settings(200)
FUZZ_E2E = fuzz_settings(60, share=0.25)           # whole imports, which write a store: a quarter


def importer_errors_only(fn, *args, **kwargs):
    """``fn``'s result, or None where it raised ImporterError; any other exception fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImporterWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)
    except ImporterError as e:
        assert str(e), "an ImporterError must say what is wrong"
        return None


# ------------------------------------------------------------------------------- byte mutations

GARBAGE = ["{", "}", "ROOT", "JOINT", "End", "Site", "OFFSET", "CHANNELS", "MOTION", "HIERARCHY",
           "Frames:", "Frame", "Time:", "Xrotation", "Yposition", "Wrotation", "nan", "NaN", "inf",
           "-inf", "infinity", "1e308", "-1e308", "1e-320", "1e400", "-5", "-1", "0", "3",
           "99999999999999999999", "9" * 5000, "1_0", "\u0661", "0x10", "\x00", "\u00e9", "\ud800",
           ":", "", "  ", "\t", "\r", "\n", "#"]


@st.composite
def mutated_text(draw, base: str) -> str:
    """``base`` with a few token-level edits (delete, duplicate, replace, insert, swap lines) and
    maybe a truncation."""
    lines = [ln.split(" ") for ln in base.split("\n")]
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        op = draw(st.sampled_from(["delete", "dup", "replace", "insert", "swap", "drop_line", "dup_line"]))
        k = draw(st.integers(0, max(len(line) - 1, 0)))
        tok = draw(st.sampled_from(GARBAGE) | st.text(max_size=6))
        if op == "delete" and line:
            del line[k]
        elif op == "dup" and line:
            line.insert(k, line[k])
        elif op == "replace" and line:
            line[k] = tok
        elif op == "insert":
            line.insert(k, tok)
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "drop_line" and len(lines) > 1:
            del lines[i]
        elif op == "dup_line":
            lines.insert(i, list(line))
    text = "\n".join(" ".join(ln) for ln in lines)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


@st.composite
def mutated_bytes(draw, base: bytes, max_edits: int = 6) -> bytes:
    """``base`` truncated, extended, with flipped, overwritten, inserted or deleted bytes."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append", "u32"]))
        k = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[k] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[k] = draw(st.integers(0, 255))
        elif op == "insert":
            data[k:k] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[k:k + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[k:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "u32" and len(data) >= 4:
            k = min(k, len(data) - 4)
            v = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]) | st.integers(0, 2 ** 32 - 1))
            data[k:k + 4] = struct.pack("<I", v)
    return bytes(data)


# ======================================================================================== BVH

ZYX = "Zrotation Yrotation Xrotation"
ROOT_CH = "Xposition Yposition Zposition " + ZYX
# A LaFAN1-style rig small enough to fuzz, large enough to map onto SMPL (cm, y up).
RIG = [
    ("Hips", None, (0, 0, 0), ROOT_CH),
    ("LeftUpLeg", "Hips", (10, -5, 0), ZYX), ("LeftLeg", "LeftUpLeg", (0, -40, 0), ZYX),
    ("LeftFoot", "LeftLeg", (0, -40, 0), ZYX),
    ("RightUpLeg", "Hips", (-10, -5, 0), ZYX), ("RightLeg", "RightUpLeg", (0, -40, 0), ZYX),
    ("RightFoot", "RightLeg", (0, -40, 0), ZYX),
    ("Spine", "Hips", (0, 10, 0), ZYX), ("Neck", "Spine", (0, 40, 0), ZYX), ("Head", "Neck", (0, 10, 0), ZYX),
    ("LeftArm", "Spine", (15, 35, 0), ZYX), ("LeftForeArm", "LeftArm", (25, 0, 0), ZYX),
    ("LeftHand", "LeftForeArm", (25, 0, 0), ZYX),
    ("RightArm", "Spine", (-15, 35, 0), ZYX), ("RightForeArm", "RightArm", (-25, 0, 0), ZYX),
    ("RightHand", "RightForeArm", (-25, 0, 0), ZYX),
]


def make_bvh(rig=RIG, n_frames: int = 3, frame_time: float = 1 / 30, end_site: str = "Head") -> str:
    children: dict = {}
    for name, parent, _, _ in rig:
        children.setdefault(parent, []).append(name)
    spec = {name: (off, ch) for name, _, off, ch in rig}
    lines, n_ch = ["HIERARCHY"], 0

    def emit(name, depth):
        nonlocal n_ch
        off, ch = spec[name]
        pad = "  " * depth
        lines.extend([f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}", pad + "{",
                      f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}", f"{pad}  CHANNELS {len(ch.split())} {ch}"])
        n_ch += len(ch.split())
        for c in children.get(name, []):
            emit(c, depth + 1)
        if name == end_site:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0 10 0", pad + "  }"])
        lines.append(pad + "}")

    emit(children[None][0], 0)
    lines += ["MOTION", f"Frames: {n_frames}", f"Frame Time: {frame_time:.8f}"]
    for f in range(n_frames):
        row = [0.0, 90.0, 0.0] + [10.0 * f] * (n_ch - 3)
        lines.append(" ".join(f"{v:.4f}" for v in row))
    return "\n".join(lines) + "\n"


VALID_BVH = make_bvh()


def bvh_pipeline(text: str) -> None:
    """Parse, map onto SMPL and convert, as ``despite import bvh`` does before writing."""
    motion = bvh_format.parse_bvh(text, "fuzz.bvh")
    assert motion.values.shape == (motion.num_frames, sum(len(j.channels) for j in motion.joints))
    assert np.isfinite(motion.values).all() and motion.frame_time > 0 and np.isfinite(motion.fps)
    assert np.isfinite(motion.times).all()
    kin = bvh_rig.bvh_to_kinematics(motion)
    assert np.isfinite(kin.positions).all() and np.isfinite(kin.rotations).all()


def test_bvh_valid_base_converts():
    bvh_pipeline(VALID_BVH)


@FUZZ
@given(mutated_text(VALID_BVH))
def test_fuzz_bvh_token_mutations(text):
    importer_errors_only(bvh_pipeline, text)


@FUZZ
@given(st.lists(st.sampled_from(GARBAGE[:-6] + ["JOINT a", "ROOT b", "End Site", "OFFSET 1 2 3",
                                                "CHANNELS 1 Xrotation", "Frames: 1", "Frame Time: 0.1", "1"]),
                max_size=40).map(" \n".join))
def test_fuzz_bvh_token_soup(text):
    importer_errors_only(bvh_pipeline, "HIERARCHY\n" + text)


@FUZZ
@given(st.sampled_from(["nan", "inf", "-inf", "1e308", "-1e308", "1e300", "1e-320", "0", "-0"]),
       st.sampled_from(["offset", "end", "motion", "frame_time", "frames"]))
def test_fuzz_bvh_extreme_numbers(value, where):
    text = VALID_BVH
    if where == "offset":
        text = text.replace("OFFSET 0 -40 0", f"OFFSET 0 {value} 0", 1)
    elif where == "end":
        text = text.replace("    OFFSET 0 10 0\n", f"    OFFSET 0 {value} 0\n")
    elif where == "motion":
        head, _, rows = text.partition("Frame Time: ")
        first, _, rest = rows.partition("\n")
        rows = rest.split("\n")
        rows[1] = " ".join([value] + rows[1].split()[1:])
        text = head + "Frame Time: " + first + "\n" + "\n".join(rows)
    elif where == "frame_time":
        text = text.replace(f"Frame Time: {1 / 30:.8f}", f"Frame Time: {value}")
    else:
        text = text.replace("Frames: 3", f"Frames: {value}")
    importer_errors_only(bvh_pipeline, text)


HOSTILE_NUMBERS = st.sampled_from(["nan", "-nan", "inf", "-inf", "1e308", "-1e308", "1.7976931348623157e308",
                                   "1e300", "1e-320", "5e-324", "0", "-0", "1e400", "-1", "123456789012345678901234"]) \
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)


@st.composite
def number_mutated_bvh(draw) -> str:
    """The valid file with some of its numbers (OFFSETs, Frames, Frame Time, channel values)
    replaced by extreme ones: the structure stays valid, so the values reach the kinematics."""
    toks = VALID_BVH.split(" ")
    numeric = [i for i, t in enumerate(toks) if t.strip().lstrip("-").replace(".", "", 1).isdigit()]
    for i in draw(st.lists(st.sampled_from(numeric), min_size=1, max_size=4)):
        tail = toks[i][len(toks[i].rstrip()):]            # keep the newline that ends a line
        toks[i] = draw(HOSTILE_NUMBERS) + tail
    return " ".join(toks)


@FUZZ
@given(number_mutated_bvh())
def test_fuzz_bvh_extreme_values_in_valid_structure(text):
    importer_errors_only(bvh_pipeline, text)


NAMES = ["Hips", "Pelvis", "LeftUpLeg", "RightUpLeg", "LeftLeg", "RightLeg", "LeftFoot", "RightFoot",
         "LeftToeBase", "Spine", "Spine1", "Spine2", "Neck", "Neck1", "Head", "LeftShoulder", "RightShoulder",
         "LeftArm", "RightArm", "LeftForeArm", "RightForeArm", "LeftHand", "RightHand", "LHipJoint",
         "LeftHandIndex1", "RightFingerBase", "mixamorig:Hips", "L_Hip", "R_Knee", "Bip01 L Thigh", "head", "x"]


@st.composite
def random_rig(draw):
    """A random tree of joints with rig-like names (so that mapping gets somewhere), random
    offsets (zero-length and coincident bones included) and random channel lists."""
    n = draw(st.integers(1, 28))
    names = draw(st.lists(st.sampled_from(NAMES) | st.text("LRlr_:. abcHipsLeg", min_size=1, max_size=8),
                          min_size=n, max_size=n, unique=True))
    coord = st.sampled_from([0, 0, 1, -1, 10, -10, 40, -40]) | st.floats(-100, 100, allow_nan=False)
    rig = []
    for i, name in enumerate(names):
        parent = None if i == 0 else names[draw(st.integers(0, i - 1))]
        off = tuple(draw(coord) for _ in range(3))
        chans = draw(st.permutations(ROOT_CH.split()).flatmap(lambda p: st.integers(0, 6).map(lambda k: p[:k])))
        rig.append((name.replace("{", "").replace("}", "") or "j", parent, off, " ".join(chans)))
    return rig


@st.composite
def perturbed_rig(draw):
    """The valid rig with joints renamed, re-parented (to any joint listed earlier, so the tree
    stays a tree), moved (zero-length and coincident bones, huge offsets), given other channels,
    removed (children re-attached to the parent) or added (fingers, toes, twists)."""
    rig = [list(j) for j in RIG]
    coord = st.sampled_from([0.0, 0.0, 1e-12, 1.0, -10.0, 40.0, 1e6, 1e150]) | st.floats(-100, 100)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["rename", "reparent", "offset", "channels", "remove", "add"]))
        k = draw(st.integers(1, len(rig) - 1)) if len(rig) > 1 else 0
        if op == "rename":
            new = draw(st.sampled_from(NAMES))
            if all(j[0] != new for j in rig):
                old, rig[k][0] = rig[k][0], new
                for j in rig:
                    j[1] = new if j[1] == old else j[1]
        elif op == "reparent" and k:
            rig[k][1] = rig[draw(st.integers(0, k - 1))][0]
        elif op == "offset":
            rig[k][2] = tuple(draw(coord) for _ in range(3))
        elif op == "channels":
            rig[k][3] = " ".join(draw(st.permutations(ROOT_CH.split()))[:draw(st.integers(0, 6))])
        elif op == "remove" and k:
            gone = rig.pop(k)
            for j in rig:
                j[1] = gone[1] if j[1] == gone[0] else j[1]
        elif op == "add":
            name = draw(st.sampled_from(NAMES)) + str(len(rig))
            rig.insert(k + 1, [name, rig[k][0], tuple(draw(coord) for _ in range(3)), ZYX])
    return [tuple(j) for j in rig]


@FUZZ
@given(random_rig() | perturbed_rig(), st.sampled_from(["y", "z"]),
       st.sampled_from([None, None, 0.01, 1.0, 1e-300, 1e300]), st.integers(1, 3))
def test_fuzz_bvh_random_rigs(rig, up_axis, unit_scale, n_frames):
    try:
        text = make_bvh(rig, n_frames=n_frames, end_site=rig[-1][0])
    except (KeyError, IndexError, RecursionError):
        return                                   # a name the generator cannot nest (duplicate; its own parent)

    def run():
        motion = bvh_format.parse_bvh(text, "rig.bvh")
        kin = bvh_rig.bvh_to_kinematics(motion, unit_scale, up_axis)
        assert np.isfinite(kin.positions).all() and kin.positions.shape == (n_frames, 24, 3)
    importer_errors_only(run)


@FUZZ
@given(mutated_bytes(VALID_BVH.encode()))
def test_fuzz_bvh_file_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.bvh"
        path.write_bytes(data)
        motion = importer_errors_only(bvh_format.load_bvh, path)
        if motion is not None:
            importer_errors_only(bvh_rig.bvh_to_kinematics, motion)


@FUZZ_E2E
@given(mutated_text(VALID_BVH))
def test_fuzz_bvh_import_end_to_end(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "walk.bvh"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        if importer_errors_only(bvh.import_bvh, [path], Path(d) / "store") is not None:
            Store(Path(d) / "store").read("walk")


def _chain(n: int, channels: str = "CHANNELS 1 Zrotation") -> str:
    """A rig of ``n`` JOINTs, each inside the one before (nesting depth n + 1)."""
    lines = ["HIERARCHY", "ROOT r", "{", "OFFSET 0 0 0", "CHANNELS 3 Xposition Yposition Zposition"]
    for i in range(n):
        lines += [f"JOINT j{i}", "{", "OFFSET 0 1 0", channels]
    lines += ["}"] * (n + 1) + ["MOTION", "Frames: 2", "Frame Time: 0.1"]
    n_ch = 3 + (n if channels.startswith("CHANNELS 1") else 0)
    lines += [" ".join(["0"] * n_ch)] * 2
    return "\n".join(lines) + "\n"


def _traced_events(n: int) -> int:
    """Python trace events (calls, lines, returns, generator resumptions) of parsing a rig of ``n``
    nested joints and mapping it: a count of the interpreter's work that does not depend on the
    machine's speed or load."""
    text = _chain(n, "CHANNELS 0")
    events = 0

    def tracer(frame, event, arg):
        nonlocal events
        events += 1
        return tracer

    before = sys.gettrace()
    sys.settrace(tracer)
    try:
        motion = bvh_format.parse_bvh(text, "deep.bvh")
        with pytest.raises(ImporterError, match="cannot find the core joint"):
            bvh_rig.bvh_to_kinematics(motion)
    finally:
        sys.settrace(before)
    return events


@pytest.mark.parametrize("n", [30_000])
def test_bvh_deep_nesting_is_linear(n):
    """Joints nested 30 000 deep (about 1.2 MB of text): the parser is iterative, not recursive
    (no RecursionError, parents chained), and its work grows linearly with the joints: doubling a
    rig from 1000 to 2000 joints doubles the traced interpreter events within 5 % (measured: about
    265 per joint at both sizes). The duplicate-name check used to scan every earlier joint
    (quadratic: the same doubling multiplied the events by about 3.5, ~30 s at 30 000 joints).
    Counted, not timed; the wall time is `bench/bvh_parse_speed.py`."""
    motion = bvh_format.parse_bvh(_chain(n, "CHANNELS 0"), "deep.bvh")
    assert len(motion.joints) == n + 1 and motion.parents[-1] == n - 1
    with pytest.raises(ImporterError, match="cannot find the core joint"):
        bvh_rig.bvh_to_kinematics(motion)
    small, large = _traced_events(1000), _traced_events(2000)
    assert abs(large - 2 * small) < 0.05 * small, (small, large)


def test_bvh_second_channels_line_is_refused():
    """A joint with two CHANNELS lines used to keep the second and leave the first one's
    columns in every motion row, read as the next joints' values."""
    text = VALID_BVH.replace("CHANNELS 3 Zrotation Yrotation Xrotation", "CHANNELS 1 Xrotation\n"
                             "    CHANNELS 2 Zrotation Yrotation", 1)
    with pytest.raises(ImporterError, match=r"twice\.bvh: line 10: joint 'LeftUpLeg' has a second CHANNELS line"):
        bvh_format.parse_bvh(text, "twice.bvh")


@pytest.mark.parametrize("frame_time, frames", [("inf", 3), ("1e-320", 3), ("5e-324", 1), ("1e308", 3)])
def test_bvh_frame_time_needs_a_finite_clock(frame_time, frames):
    text = VALID_BVH.replace(f"Frame Time: {1 / 30:.8f}", f"Frame Time: {frame_time}")
    text = text.replace("Frames: 3", f"Frames: {frames}")
    with pytest.raises(ImporterError, match="Frame Time must be a positive number of seconds with a finite|"
                                            "overflow the clock"):
        bvh_format.parse_bvh(text, "clock.bvh")


@pytest.mark.parametrize("offset", ["nan 0 0", "0 inf 0", "0 0 -inf"])
def test_bvh_offset_must_be_finite(offset):
    with pytest.raises(ImporterError, match=rf"line \d+: OFFSET {offset} is not finite"):
        bvh_format.parse_bvh(VALID_BVH.replace("OFFSET 0 -40 0", f"OFFSET {offset}", 1), "nan.bvh")


@pytest.mark.parametrize("values", [("1.7e308", "1.7e308"), ("-1.7e308", "-1.7e308")])
def test_bvh_overflowing_kinematics_is_an_importer_error(values):
    """Finite channel values whose sum overflows: the root 1.7e308 up and a position channel on
    the arm 1.7e308 up again (inf); the kinematics used to come out non-finite."""
    rig = [(n, p, off, ROOT_CH if n == "LeftArm" else ch) for n, p, off, ch in RIG]
    lines = make_bvh(rig, n_frames=2).split("\n")
    frame1 = lines.index("MOTION") + 4
    row = lines[frame1].split()
    arm = 6 + 3 * [n for n, *_ in RIG].index("LeftArm") - 3        # the arm's Yposition column
    row[1], row[arm + 1] = values
    lines[frame1] = " ".join(row)
    motion = bvh_format.parse_bvh("\n".join(lines), "huge.bvh")
    with pytest.raises(ImporterError, match=r"huge\.bvh: frame 1: the joint positions overflow"):
        bvh_rig.bvh_to_kinematics(motion)


def test_bvh_unclosed_deep_nesting():
    text = _chain(5000).replace("}\n" * 5001, "}\n" * 10)
    with pytest.raises(ImporterError, match="MOTION before the hierarchy's blocks are closed"):
        bvh_format.parse_bvh(text, "open.bvh")


# ======================================================================================== MSR

MSR_NAME = "a02_s01_e01_sdepth.bin"


def depth_file(depth: np.ndarray) -> bytes:
    f, h, w = depth.shape
    return struct.pack("<3I", f, w, h) + depth.astype("<u4").tobytes()


_d = np.zeros((2, 4, 5), np.uint32)
_d[0, 1, 2], _d[1, 3, 4], _d[1, 0, 0] = 2000, 1500, 0xFFFFFFFF
VALID_DEPTH = depth_file(_d)


def msr_convert(path: Path) -> None:
    seq = msr.convert_file(path, max_points=3)
    assert len(seq.points) == seq.num_frames >= 1
    assert all(p.ndim == 2 and p.shape[1] == 3 and np.isfinite(p).all() for p in seq.points)


def test_msr_valid_base_converts(tmp_path):
    (tmp_path / MSR_NAME).write_bytes(VALID_DEPTH)
    msr_convert(tmp_path / MSR_NAME)


@FUZZ
@given(mutated_bytes(VALID_DEPTH))
def test_fuzz_msr_depth_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / MSR_NAME
        path.write_bytes(data)
        importer_errors_only(msr_convert, path)


@FUZZ
@given(st.tuples(*[st.sampled_from([0, 1, 2, 3, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(0, 2 ** 32 - 1)] * 3),
       st.integers(0, 64))
def test_fuzz_msr_headers(header, extra):
    """Any header (frames, width, height), counts up to 2**32 - 1, over a short body: the size
    check comes before any allocation the header asks for."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / MSR_NAME
        path.write_bytes(struct.pack("<3I", *header) + bytes(range(extra % 256))[:extra])
        importer_errors_only(msr_convert, path)


@FUZZ
@given(st.integers(0, 4), st.integers(0, 6), st.integers(0, 6), st.data())
def test_fuzz_msr_consistent_headers(frames, width, height, data):
    """Headers that match the body (empty frames, 1-pixel images, all pixels empty or at the
    largest depth): they reach the back-projection."""
    depth = data.draw(st.lists(st.sampled_from([0, 1, 1000, 0xFFFFFFFF]) | st.integers(0, 2 ** 32 - 1),
                               min_size=frames * width * height, max_size=frames * width * height))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / MSR_NAME
        path.write_bytes(struct.pack("<3I", frames, width, height) + np.asarray(depth, "<u4").tobytes())
        importer_errors_only(msr_convert, path)


@FUZZ
@given(st.text(max_size=40) | st.from_regex(r"\Aa[0-9\u0660-\u0669]{0,6}_s\d{0,6}_e\d{0,6}_sdepth\.bin\Z"))
def test_fuzz_msr_file_names(name):
    importer_errors_only(msr.parse_name, name)


def test_msr_name_with_too_many_digits():
    """int() refuses over 4300 digits (ValueError, not ImporterError)."""
    with pytest.raises(ImporterError, match="file name"):
        msr.parse_name("a" + "1" * 5000 + "_s01_e01_sdepth.bin")


@FUZZ_E2E
@given(mutated_bytes(VALID_DEPTH))
def test_fuzz_msr_import_end_to_end(data):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "msr"
        root.mkdir()
        (root / MSR_NAME).write_bytes(data)
        if importer_errors_only(msr.import_msr, root, Path(d) / "store") is not None:
            Store(Path(d) / "store").read("a02_s01_e01")


# ======================================================================================= LIPD

def lipd_frame(pc, seq_path: str, t: int) -> dict:
    return {"pc": pc, "imu_ori": np.tile(np.eye(3, dtype=np.float32).reshape(9), 6),
            "imu_acc": np.arange(18, dtype=np.float32) + t, "gt_joint": np.full(72, t, np.float32),
            "seq_path": seq_path, "gt": np.zeros(72), "gt_r": np.zeros(3), "trans": np.zeros(3)}


def lipd_frames() -> list[dict]:
    return ([lipd_frame(np.ones((4, 3), np.float32) * t, "./LIPD_test/s9/walk1", t) for t in range(3)]
            + [lipd_frame("./LIPD_test/pc/s9/run1/000.bin", "./LIPD_test/s9/run1", 0)])


def dumps(obj, protocol: int = 4) -> bytes:
    """pickle.dumps, allowing the deeply nested values of the hostile inputs."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return pickle.dumps(obj, protocol=protocol)
    finally:
        sys.setrecursionlimit(limit)


def write_lipd_root(root: Path, payload: bytes) -> None:
    (root / "LIPD_test" / "pc" / "s9" / "run1").mkdir(parents=True, exist_ok=True)
    np.ones((2, 3), np.float32).tofile(root / "LIPD_test" / "pc" / "s9" / "run1" / "000.bin")
    (root / "LIPD_test.pkl").write_bytes(payload)


def lipd_import(root: Path, out: Path) -> None:
    summary = lipd.import_lipd(root, out)
    store = Store(out)
    for sid in store.sequence_ids:
        store.read(sid)
    assert summary["sequences"] == len(store)


def test_lipd_valid_base_imports(tmp_path):
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        write_lipd_root(tmp_path / f"p{proto}", pickle.dumps(lipd_frames(), protocol=proto))
        lipd_import(tmp_path / f"p{proto}", tmp_path / f"store{proto}")
        seq = Store(tmp_path / f"store{proto}").read("LIPD_test/s9/walk1")
        np.testing.assert_allclose(seq.points[2], 2.0)
        np.testing.assert_allclose(seq.imu[1, 0, 9:], [1, 2, 3])


VALID_PICKLES = [pickle.dumps(lipd_frames()[:2], protocol=p) for p in (2, 4, 5)]


@FUZZ
@given(st.sampled_from(VALID_PICKLES).flatmap(lambda b: mutated_bytes(b, max_edits=4)))
def test_fuzz_lipd_pickle_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "LIPD_test.pkl"
        path.write_bytes(data)
        frames = importer_errors_only(lipd.load_lipd_pickle, path)
        if frames is not None:
            assert isinstance(frames, list) and all(isinstance(f, dict) for f in frames)
            raws = importer_errors_only(lipd.split_sequences, frames, "LIPD_test", path, lipd.WarningLog())
            for raw in raws or []:
                importer_errors_only(lipd.convert_sequence, raw, Path(d), lipd.lipd_layout(), 10.0)
    _numpy_dtypes_intact()


def _deep(n: int):
    x: list = []
    for _ in range(n):
        x = [x]
    return x


HOSTILE_VALUES = st.sampled_from([
    None, True, 0, -1, 10 ** 400, -(10 ** 400), float("nan"), float("inf"), 1e300, "", "abc", "1.5",
    b"\x00\x01", "x" * 5000, "./" + "d/" * 3000 + "f.bin", "a\x00b", "\ud800", "/dev/null", "/", ".", "./",
    "./LIPD_test/pc/s9/run1", "./LIPD_test/pc/s9/run1/000.bin", [], [1, 2], [[1, 2], [3]], {"a": 1}, {1, 2},
    (1.0, 2.0, 3.0), _deep(2000), np.zeros(0, np.float32), np.zeros((5, 3), np.float32),
    np.full(54, np.nan, np.float32), np.full(18, np.inf), np.full(72, 1e300), np.zeros(55), np.zeros((6, 9)),
    np.array(["1", "2", "x"] * 6), np.array([None] * 18, object), np.array([10 ** 400] * 18, object),
    np.ones(54, bool), np.arange(18, dtype=np.int64), np.ones((2, 3), np.float32) * 1e38,
    np.zeros((0, 3), np.float32), np.zeros(3, np.float32), np.zeros((1, 1, 3), np.float64),
])


@st.composite
def hostile_frames(draw):
    frames = lipd_frames()
    for _ in range(draw(st.integers(1, 4))):
        f = frames[draw(st.integers(0, len(frames) - 1))]
        key = draw(st.sampled_from(["pc", "imu_ori", "imu_acc", "gt_joint", "seq_path"]))
        if draw(st.integers(0, 9)) == 0:
            f.pop(key, None)
        else:
            f[key] = draw(HOSTILE_VALUES)
    if draw(st.booleans()):
        frames.append(draw(HOSTILE_VALUES | st.just({})))
    return draw(st.sampled_from([frames, frames[:1], frames * 2]))


@FUZZ_E2E
@given(hostile_frames(), st.sampled_from([2, 4, 5]))
def test_fuzz_lipd_hostile_frame_fields(frames, proto):
    """Well-formed pickles holding wrong values in every field: shapes, types, NaN, huge numbers,
    long or odd paths, deep nesting."""
    with tempfile.TemporaryDirectory() as d:
        write_lipd_root(Path(d), dumps(frames, protocol=proto))
        importer_errors_only(lipd_import, Path(d), Path(d) / "store")


# ------------------------------------------------------------------ LIPD: pickles as programs

def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def _int(v: int) -> bytes:
    if -(2 ** 31) <= v < 2 ** 31:
        return pickle.BININT + struct.pack("<i", v)
    b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG4 + struct.pack("<I", len(b)) + b


def _bytes(b: bytes) -> bytes:
    return pickle.BINBYTES + struct.pack("<I", len(b)) + b


ADMITTED = [tuple(g.rsplit(".", 1)) for g in lipd.ADMITTED_GLOBALS]
OPS = st.one_of(
    st.sampled_from(ADMITTED).map(lambda mn: _global(*mn)),
    st.sampled_from(["f8", "f4", "O8", "O", "U3", "U0", "S0", "V8", "c16", "M8[ns]", "<", ">", "|", "C", "F",
                     "latin1", "utf-8", "b", "i4"]).map(_str),
    st.sampled_from([0, 1, 2, 3, 4, -1, 8, 10 ** 6, 2 ** 31, 2 ** 62, 10 ** 30]).map(_int),
    st.binary(max_size=24).map(_bytes),
    st.sampled_from([pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE, pickle.MARK, pickle.TUPLE, pickle.TUPLE1,
                     pickle.TUPLE2, pickle.TUPLE3, pickle.EMPTY_TUPLE, pickle.EMPTY_LIST, pickle.APPEND,
                     pickle.APPENDS, pickle.EMPTY_DICT, pickle.SETITEM, pickle.REDUCE, pickle.BUILD,
                     pickle.REDUCE, pickle.BUILD, pickle.DUP, pickle.POP, pickle.MEMOIZE, pickle.BINGET + b"\x00",
                     pickle.BINGET + b"\x01"]),
)


@st.composite
def array_program(draw) -> bytes:
    """Numpy's own array reduction with some arguments swapped for random ones."""
    shape = draw(st.sampled_from([(0,), (3,), (2, 2), (10 ** 6,), (2 ** 40,), (-1,), ()]))
    dt = draw(st.sampled_from(["f8", "O8", "U3", "S0", "b1", "V8"]))
    data = draw(st.sampled_from([b"", b"\x00" * 8, b"\x00" * 24, b"\x00" * 32]))
    items = draw(st.integers(0, 4))
    tup = lambda *parts: pickle.MARK + b"".join(parts) + pickle.TUPLE   # noqa: E731
    dtype = (_global("numpy", "dtype") + tup(_str(dt), pickle.NEWFALSE, pickle.NEWTRUE) + pickle.REDUCE
             + tup(_int(3), _str(draw(st.sampled_from(["<", ">", "|"]))), pickle.NONE, pickle.NONE, pickle.NONE,
                   _int(draw(st.sampled_from([-1, 0, 8, 12]))), _int(-1), _int(0)) + pickle.BUILD)
    payload = (pickle.EMPTY_LIST + pickle.MARK + b"".join(_int(i) for i in range(items)) + pickle.APPENDS
               if dt == "O8" and draw(st.booleans()) else _bytes(data))
    state = tup(_int(1), tup(*[_int(v) for v in shape]), dtype, pickle.NEWFALSE, payload)
    kind = draw(st.sampled_from(["reconstruct", "frombuffer", "scalar", "ndarray"]))
    core = draw(st.sampled_from(["numpy._core", "numpy.core"]))
    if kind == "reconstruct":
        body = (_global(f"{core}.multiarray", "_reconstruct")
                + tup(_global("numpy", "ndarray"), tup(_int(0)), _bytes(b"b")) + pickle.REDUCE + state + pickle.BUILD)
    elif kind == "frombuffer":
        body = (_global(f"{core}.numeric", "_frombuffer")
                + tup(_bytes(data), dtype, tup(*[_int(v) for v in shape]), _str("C")) + pickle.REDUCE)
    elif kind == "scalar":
        body = _global(f"{core}.multiarray", "scalar") + tup(dtype, _bytes(data)) + pickle.REDUCE
    else:
        body = _global("numpy", "ndarray") + tup(tup(*[_int(abs(v)) for v in shape]), _str(dt)) + pickle.REDUCE
    return (pickle.PROTO + b"\x04" + pickle.EMPTY_LIST + pickle.EMPTY_DICT + _str("pc") + body
            + pickle.SETITEM + pickle.APPEND + pickle.STOP)


def _numpy_dtypes_intact() -> None:
    """No pickle may mutate numpy's shared dtype instances."""
    assert np.dtype("f8").str == "<f8" and np.dtype("f4").itemsize == 4 and np.dtype("O").str == "|O"
    assert np.dtype("u1").str == "|u1" and np.dtype("f8").fields is None


def load_program(program: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "LIPD_test.pkl"
        path.write_bytes(program)
        frames = importer_errors_only(lipd.load_lipd_pickle, path)
    _numpy_dtypes_intact()
    return frames


@FUZZ
@given(st.lists(OPS, max_size=30).map(lambda ops: pickle.PROTO + b"\x04" + b"".join(ops) + pickle.STOP))
def test_fuzz_lipd_random_pickle_programs(program):
    """Random programs over the admitted globals: refused or loaded, never a crash."""
    load_program(program)


@FUZZ
@given(array_program())
def test_fuzz_lipd_numpy_reduction_arguments(program):
    frames = load_program(program)
    if frames is not None:
        for value in frames[0].values():
            if isinstance(value, np.ndarray):
                assert value.size <= 10 ** 4 and type(value) is np.ndarray


class _Pwn:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.target}",)


@pytest.mark.parametrize("proto", [0, 2, 4, 5])
def test_lipd_pickle_calling_os_system_is_refused(tmp_path, proto):
    target = tmp_path / "FILE"
    root = tmp_path / "LIPD"
    root.mkdir()
    (root / "LIPD_test.pkl").write_bytes(pickle.dumps([{"seq_path": "a", "pc": _Pwn(target)}], protocol=proto))
    with pytest.raises(ImporterError) as refused:
        lipd.import_lipd(root, tmp_path / "store")
    assert not target.exists(), "the pickle ran os.system"
    assert re.search(r"LIPD_test\.pkl: refused: the pickle asks for the global (posix|os|nt)\.system,",
                     str(refused.value)), refused.value
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").glob("*.npz"))


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("builtins", "getattr"), ("builtins", "__import__"), ("subprocess", "Popen"),
    ("numpy", "load"), ("numpy.lib.format", "read_array"), ("numpy.testing", "assert_"),
    ("numpy._core.multiarray", "_ARRAY_API"), ("collections", "OrderedDict"), ("copyreg", "_reconstructor"),
    ("pathlib", "PosixPath"), ("numpy", "frombuffer"), ("builtins", "bytearray"),
])
def test_lipd_pickle_other_globals_are_refused(tmp_path, module, name):
    program = pickle.PROTO + b"\x02" + _global(module, name) + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.STOP
    path = tmp_path / "LIPD_test.pkl"
    path.write_bytes(program)
    with pytest.raises(ImporterError, match=rf"LIPD_test\.pkl: refused: .*global {module}\.{name},"):
        lipd.load_lipd_pickle(path)


def test_lipd_admitted_globals_are_numpy_array_helpers_and_containers():
    assert set(lipd.ADMITTED_GLOBALS) == {
        "numpy.ndarray", "numpy.dtype", "_codecs.encode",
        "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar", "numpy._core.numeric._frombuffer",
        "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar", "numpy.core.numeric._frombuffer",
        "builtins.set", "builtins.frozenset", "builtins.bytes",
        "__builtin__.set", "__builtin__.frozenset", "__builtin__.bytes",
    }


@pytest.mark.parametrize("proto", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_lipd_restricted_unpickler_reads_what_numpy_writes(tmp_path, proto):
    values = {"f4": np.arange(6, dtype=np.float32).reshape(2, 3), "fortran": np.asfortranarray(np.ones((2, 3))),
              "str": np.array(["ab", "c"]), "obj": np.array([1, "x", None], object), "empty": np.zeros((0, 3)),
              "scalar": np.float32(1.5), "sstr": np.str_("walk"), "i": np.int64(-3), "b": np.bool_(True),
              "set": {1, 2}, "bytes": b"", "bytes2": b"xy", "tuple": (1, "a"), "big": np.arange(4, dtype=">i4")}
    data = pickle.dumps([values], protocol=proto)
    # numpy 1.x names its helpers numpy.core.*: rename them where the opcodes carry no lengths
    variants = [data] + ([data.replace(b"numpy._core", b"numpy.core")] if proto <= 3 else [])
    for variant in variants:
        path = tmp_path / "LIPD_test.pkl"
        path.write_bytes(variant)
        got = lipd.load_lipd_pickle(path)[0]
        for k, v in values.items():
            if isinstance(v, np.ndarray):
                assert type(got[k]) is np.ndarray and got[k].shape == v.shape
                assert got[k].tolist() == v.tolist(), k
            else:
                assert got[k] == v, k


def test_lipd_object_array_shorter_than_its_shape_does_not_crash(tmp_path):
    """numpy's own ndarray.__setstate__ segfaults on this state (an object array of 10**6 items
    with a list of 2): run in a child process so that a regression fails instead of killing
    the test run."""
    tup = lambda *parts: pickle.MARK + b"".join(parts) + pickle.TUPLE   # noqa: E731
    dtype = _global("numpy", "dtype") + tup(_str("O8"), pickle.NEWFALSE, pickle.NEWTRUE) + pickle.REDUCE
    program = (pickle.PROTO + b"\x02" + pickle.EMPTY_LIST + pickle.EMPTY_DICT + _str("pc")
               + _global("numpy.core.multiarray", "_reconstruct") + tup(_global("numpy", "ndarray"), tup(_int(0)),
                                                                         _bytes(b"b")) + pickle.REDUCE
               + tup(_int(1), tup(_int(10 ** 6)), dtype, pickle.NEWFALSE,
                     pickle.EMPTY_LIST + pickle.MARK + _int(1) + _int(2) + pickle.APPENDS)
               + pickle.BUILD + pickle.SETITEM + pickle.APPEND + pickle.STOP)
    path = tmp_path / "LIPD_test.pkl"
    path.write_bytes(program)
    code = ("import sys\nfrom despite_core.data.importers import lipd\n"
            "try:\n    lipd.load_lipd_pickle(sys.argv[1])\n"
            "except lipd.ImporterError as e:\n    print('refused:', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, f"the child died with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "refused:" in proc.stdout and "object array of shape (1000000,) needs a list of 1000000 items" \
        in proc.stdout


@pytest.mark.parametrize("state", [
    "(3, '|', None, ('a',), {'a': (dtype, 0)}, 8, 1, 0)",      # a structured type
    "(3, '|', (dtype, (10 ** 6,)), None, None, 8, 1, 0)",      # a subarray type
    "(3, '<', None, None, None, -1, -1, 0, {'x': 1})",         # metadata
    "(3, '<', None, None, None, 16, -1, 0)",                   # an item size that is not the type's
])
def test_lipd_dtype_state_must_be_a_plain_type(tmp_path, state):
    """numpy.dtype('f8', False, False) is numpy's shared float64 instance: the state a pickle
    BUILDs on it never reaches dtype.__setstate__, and only plain types' states are taken."""
    tup = lambda *parts: pickle.MARK + b"".join(parts) + pickle.TUPLE   # noqa: E731
    dtype = _global("numpy", "dtype") + tup(_str("f8"), pickle.NEWFALSE, pickle.NEWFALSE) + pickle.REDUCE
    state_ops = {
        "(3, '|', None, ('a',), {'a': (dtype, 0)}, 8, 1, 0)":
            tup(_int(3), _str("|"), pickle.NONE, tup(_str("a")), pickle.EMPTY_DICT + _str("a")
                + tup(dtype, _int(0)) + pickle.SETITEM, _int(8), _int(1), _int(0)),
        "(3, '|', (dtype, (10 ** 6,)), None, None, 8, 1, 0)":
            tup(_int(3), _str("|"), tup(dtype, tup(_int(10 ** 6))), pickle.NONE, pickle.NONE, _int(8), _int(1),
                _int(0)),
        "(3, '<', None, None, None, -1, -1, 0, {'x': 1})":
            tup(_int(3), _str("<"), pickle.NONE, pickle.NONE, pickle.NONE, _int(-1), _int(-1), _int(0),
                pickle.EMPTY_DICT + _str("x") + _int(1) + pickle.SETITEM),
        "(3, '<', None, None, None, 16, -1, 0)":
            tup(_int(3), _str("<"), pickle.NONE, pickle.NONE, pickle.NONE, _int(16), _int(-1), _int(0)),
    }
    program = pickle.PROTO + b"\x02" + dtype + state_ops[state] + pickle.BUILD + pickle.STOP
    path = tmp_path / "LIPD_test.pkl"
    path.write_bytes(program)
    with pytest.raises(ImporterError, match=r"not a readable pickle \(UnpicklingError: dtype 'f8': state .*"
                                            r"(not that of a plain data type|16 bytes per item)"):
        lipd.load_lipd_pickle(path)
    _numpy_dtypes_intact()


def test_lipd_pickle_bytes_count_beyond_file(tmp_path):
    """A BINBYTES8 claiming 2**62 bytes in a 30-byte file."""
    program = pickle.PROTO + b"\x04" + b"\x8e" + struct.pack("<Q", 2 ** 62) + b"abc" + pickle.STOP
    assert load_program(program) is None


@pytest.mark.parametrize("value, match", [
    (10 ** 400, "field 'imu_acc' is not numeric"),
    ([10 ** 400] * 18, "field 'imu_acc' is not numeric"),
])
def test_lipd_huge_integers_are_importer_errors(tmp_path, value, match):
    frames = lipd_frames()
    frames[1]["imu_acc"] = value
    write_lipd_root(tmp_path, pickle.dumps(frames))
    with pytest.raises(ImporterError, match=rf"LIPD_test\.pkl.*frame 1 .*{match}"):
        lipd.import_lipd(tmp_path, tmp_path / "store")


def test_lipd_huge_integer_point_cloud(tmp_path):
    frames = lipd_frames()
    frames[0]["pc"] = [[10 ** 400, 0, 0]]
    write_lipd_root(tmp_path, pickle.dumps(frames))
    with pytest.raises(ImporterError, match=r"frame 0 .*field 'pc' is neither a path nor a numeric array"):
        lipd.import_lipd(tmp_path, tmp_path / "store")


@pytest.mark.parametrize("pc", ["./LIPD_test/pc/s9/run1/" + "x" * 5000 + ".bin",
                                "./LIPD_test/pc/s9/run1/" + "d/" * 3000 + "f.bin"])
def test_lipd_point_path_too_long(tmp_path, pc):
    frames = lipd_frames()
    frames[3]["pc"] = pc
    write_lipd_root(tmp_path, pickle.dumps(frames))
    with pytest.raises(ImporterError, match=r"frame 0 .*field 'pc': point file .* cannot be read"):
        lipd.import_lipd(tmp_path, tmp_path / "store")


@pytest.mark.parametrize("seq_path", [_deep(3000), 5, None, ["a"]])
def test_lipd_seq_path_must_be_a_string(tmp_path, seq_path):
    """str() of a list nested 3000 deep is a RecursionError; a number or None would be taken
    for a path."""
    frames = lipd_frames()
    frames[2]["seq_path"] = seq_path
    write_lipd_root(tmp_path, dumps(frames))
    with pytest.raises(ImporterError, match=r"LIPD_test\.pkl: item 2: field 'seq_path' is a \w+, expected a string"):
        lipd.import_lipd(tmp_path, tmp_path / "store")


def test_lipd_pickle_read_error(tmp_path):
    (tmp_path / "LIPD_test.pkl").mkdir()
    with pytest.raises(ImporterError, match="LIPD_test.pkl: is a directory"):
        lipd.load_lipd_pickle(tmp_path / "LIPD_test.pkl")
