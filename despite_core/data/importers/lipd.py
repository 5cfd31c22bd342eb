"""LIPD (LiDAR + IMU, 4DVLab/LIP) importer, with optional BABEL action labels.

``despite import lipd --root DIR [--babel DIR] --out STORE``

LIPD ships one pickle per subset in ``--root``: a flat list of per-frame dicts, the frames of one
sequence contiguous and in order, a new sequence starting wherever ``seq_path`` changes. Per frame:

``pc``        LiDAR points of the person: a path ('./...' relative to --root) to a raw float32
              (N, 3) file (metres; an empty file is a frame without points), or the array itself
``imu_ori``   6 slots x 3x3 rotation, sensor to world, row-major (54 numbers)
``imu_acc``   6 slots x 3 acceleration, m/s^2 (frame and gravity: see below)
``gt_joint``  (24, 3) SMPL joints, metres, same world as the points
``seq_path``  the sequence's path; ``gt``, ``gt_r``, ``trans`` are not imported

The pickles are read by a restricted unpickler (:func:`load_lipd_pickle`): lists, dicts, str,
numbers and numpy arrays of plain types only; a pickle naming any other global is refused, not run.

IMU slots: left_forearm, right_forearm, left_lower_leg, right_lower_leg, head (inferred, not
confirmed by the authors), pelvis. DeSPITE uses the first four (LIPD_SITES). The acceleration
convention is NOT documented by LIPD: following DIP/TransPose, which LIPD's synthetic subsets are
built like, we declare acceleration in the world frame with gravity removed. ``--acc-frame`` and
``--gravity`` change that declaration; they never change the numbers.

BABEL (``--babel DIR``: train.json, val.json, optional extra_*.json) gives per-frame text and the
29 LIPD-Babel-v2 classes for the AMASS-derived subsets (ACCAD, BMLmovi, CMU, TotalCapture).
"""
from __future__ import annotations

import argparse
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from despite_core.data.imu_layout import ACC_FRAMES, GRAVITY_CONVENTIONS, LIPD_SITES, ImuLayout
from despite_core.data.importers.common import (
    ImporterError, WarningLog, add_output_arguments, frame_times, progress, segments_to_frames,
    store_summary, wrap_store_error,
)
from despite_core.data.store import SMPL_JOINT_NAMES, Sequence, StoreError, StoreWriter

TRAIN_SUBSETS = ("LIPD_train", "ACCAD", "BMLmovi", "AIST", "CMU", "Trans_train")
TEST_SUBSETS = ("LIPD_test", "DIP_test", "TC_test", "Test_lidarhuman")
SUBSETS = TRAIN_SUBSETS + TEST_SUBSETS

# lipd_babel_v1 (matching / retrieval), as in DeSPITE's lipd_preprocessing.py. Trans_train and
# Test_lidarhuman are imported when present but belong to neither side of this scheme.
V1_TRAIN = ("ACCAD", "BMLmovi", "LIPD_train", "AIST", "CMU")
V1_TEST = ("LIPD_test", "TC_test", "DIP_test")

# Where subject and sequence sit in a frame's path (split on '/'): LIPD's own recordings are two
# directories shallower than the AMASS/DIP/TotalCapture-derived subsets.
_PATH_PARTS = {"LIPD_train": (3, 4), "LIPD_test": (3, 4)}
_DEFAULT_PATH_PARTS = (4, 5)

# The six IMU slots of the pickles, in file order. "head" is inferred from the body layout of
# DIP-IMU-style suits; LIPD does not name slot 4.
SLOTS = ("left_forearm", "right_forearm", "left_lower_leg", "right_lower_leg", "head", "pelvis")
ALL_SITES = SLOTS
assert SLOTS[:4] == LIPD_SITES
WORLD = "lipd_smpl_world"

DEFAULT_FPS = 10.0

# The 29 LIPD-Babel-v2 HAR classes, in the order of DeSPITE's classifier (exact BABEL raw_label).
BABEL_CLASSES = (
    "walk", "cartwheel", "run", "spin", "turn", "scratch", "jump", "sit", "stand up", "crouch",
    "kick", "point", "jumping jacks", "swim", "jog", "throw", "clap", "crawl", "skip", "stretch",
    "wave", "stand", "drink", "leap", "lean", "dance", "catch", "look", "gesture",
)

# AMASS sub-dataset name of each LIPD subset that BABEL annotates.
_BABEL_DATASET = {"ACCAD": "ACCAD", "BMLmovi": "BMLmovi", "CMU": "CMU", "TC_test": "TotalCapture"}
_BABEL_DENSE = ("train", "val")


def lipd_layout(all_sites: bool = False, acc_frame: str = "world", gravity: str = "removed") -> ImuLayout:
    """The IMU layout LIPD's numbers are declared in (see the module docstring for what is assumed)."""
    return ImuLayout(
        sites=ALL_SITES if all_sites else LIPD_SITES, channels=("rotmat", "acc"),
        acc_frame=acc_frame, gravity=gravity, world=WORLD,
        extra={"source": "LIPD pickles imu_ori/imu_acc",
               "assumed": "acc frame and gravity convention follow DIP/TransPose (not documented by "
                          "LIPD); slot 4 = head is inferred"},
    )


# ----------------------------------------------------------------------------------------- pickles
#
# A pickle is a program: plain ``pickle.load`` calls whatever global the file names (os.system
# included). LIPD pickles hold only lists and dicts of str, numbers and numpy arrays, so they are
# read with :class:`_LipdUnpickler`, whose ``find_class`` admits exactly the globals numpy's and
# Python's own pickles of those need, and nothing else. Even numpy's real reconstruction helpers
# are not handed out: given crafted arguments, ``ndarray.__setstate__`` crashes the interpreter
# (an object array whose list is shorter than its shape), ``numpy.ndarray(shape)`` allocates
# whatever the file asks, and ``numpy.dtype('f8', False, False)`` is numpy's shared float64 on
# which the pickle would call ``__setstate__``. Each admitted name is a stand-in below that checks
# its arguments and builds only plain arrays, dtypes and scalars whose size is bounded by the
# bytes actually in the file.

_MAX_NDIM = 32
# Data types a LIPD pickle may hold: booleans, integers, floats, str/bytes and objects (arrays of
# Python objects, checked element by element like any other value). No structured, subarray,
# complex, datetime or void types.
_DTYPE_KINDS = "biufUSO"


class _Forbidden(pickle.UnpicklingError):
    """A pickle asks for a global the LIPD reader does not admit."""


class _Admitted:
    """One admitted global: a callable stand-in that takes no pickle state (``BUILD`` on it fails
    rather than setting attributes on a module-level object)."""

    __slots__ = ("_name", "_call")

    def __init__(self, name: str, call) -> None:
        self._name, self._call = name, call

    def __call__(self, *args):
        if self._call is None:
            raise pickle.UnpicklingError(f"{self._name} is only admitted as an argument of numpy's "
                                         f"array reconstruction, not as a callable")
        return self._call(*args)

    def __setstate__(self, state) -> None:
        raise pickle.UnpicklingError(f"{self._name} takes no pickle state")

    def __repr__(self) -> str:
        return f"<admitted {self._name}>"


_NDARRAY = _Admitted("numpy.ndarray", None)


class _DtypeSpec:
    """What ``numpy.dtype(spec, align, copy)`` plus its ``BUILD`` state describe, checked; the
    real dtype is only made by :meth:`resolve`."""

    __slots__ = ("spec", "byteorder", "elsize")

    def __init__(self, spec=None, align=False, copy=False) -> None:
        if not isinstance(spec, str) or len(spec) > 12 or not isinstance(align, bool) or not isinstance(copy, bool):
            raise pickle.UnpicklingError(f"numpy.dtype({_short_repr(spec)}, {_short_repr(align)}, "
                                         f"{_short_repr(copy)}): not a plain data type")
        self.spec, self.byteorder, self.elsize = spec, "=", -1
        self.resolve()

    def __setstate__(self, state) -> None:
        # numpy's dtype state: (3, byteorder, subarray, names, fields, elsize, alignment, flags)
        # (version 4 adds metadata last).
        if (not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4)
                or state[1] not in ("<", ">", "|", "=") or any(s is not None for s in state[2:5])
                or not all(type(v) is int for v in state[5:8])
                or (len(state) == 9 and state[8] is not None and not (type(state[8]) is dict and not state[8]))):
            raise pickle.UnpicklingError(f"dtype {self.spec!r}: state {_short_repr(state)} is not that "
                                         f"of a plain data type")
        self.byteorder, self.elsize = state[1], state[5]
        self.resolve()

    def resolve(self) -> np.dtype:
        try:
            dt = np.dtype(self.spec)
        except (TypeError, ValueError, OverflowError) as e:
            raise pickle.UnpicklingError(f"dtype {self.spec!r}: {e}") from None
        if dt.kind not in _DTYPE_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise pickle.UnpicklingError(f"dtype {self.spec!r} (kind {dt.kind!r}) is not admitted in a LIPD "
                                         f"pickle (booleans, integers, floats, strings and objects only)")
        if self.elsize not in (-1, dt.itemsize):
            raise pickle.UnpicklingError(f"dtype {self.spec!r}: state says {self.elsize} bytes per item, "
                                         f"the type has {dt.itemsize}")
        if self.byteorder in "<>" and dt.byteorder != "|":
            dt = dt.newbyteorder(self.byteorder)
        return dt


def _as_dtype(d) -> np.dtype:
    if not isinstance(d, _DtypeSpec):
        raise pickle.UnpicklingError(f"expected a numpy.dtype, got {type(d).__name__}")
    return d.resolve()


def _short_repr(v) -> str:
    r = repr(v) if isinstance(v, (str, bytes, int, float, bool, type(None))) else f"<{type(v).__name__}>"
    return r if len(r) <= 80 else r[:77] + "..."


def _shape(shape) -> tuple[int, ...]:
    if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
            or not all(type(d) is int and d >= 0 for d in shape)):
        raise pickle.UnpicklingError(f"array shape {_short_repr(shape)} is not a tuple of at most "
                                     f"{_MAX_NDIM} non-negative integers")
    return shape


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _buffer_of(data, what: str) -> memoryview:
    if isinstance(data, (bytes, bytearray, pickle.PickleBuffer)):
        return memoryview(data).cast("B")
    raise pickle.UnpicklingError(f"{what}: expected bytes, got {type(data).__name__}")


class _UnpickledArray(np.ndarray):
    """An array being unpickled: its ``__setstate__`` checks numpy's array state against the bytes
    (or list of objects) it carries before numpy sees it. Behaves as a plain ndarray;
    :func:`load_lipd_pickle` hands out frame fields as plain ndarray views."""

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            raise pickle.UnpicklingError(f"array state {_short_repr(state)} is not numpy's "
                                         f"(version, shape, dtype, is_fortran, data)")
        shape, dspec, fortran, data = state[-4:]
        shape, dt = _shape(shape), _as_dtype(dspec)
        if not isinstance(fortran, (bool, int)):
            raise pickle.UnpicklingError(f"array state: is_fortran is a {type(fortran).__name__}")
        n = _count(shape)
        if dt.hasobject:
            if not isinstance(data, list) or len(data) != n:
                got = f"{len(data)} items" if isinstance(data, list) else f"a {type(data).__name__}"
                raise pickle.UnpicklingError(f"object array of shape {shape} needs a list of {n} items, got {got}")
        else:
            buf = _buffer_of(data, "array data")
            if dt.itemsize == 0 and n:
                raise pickle.UnpicklingError(f"array of shape {shape} of the zero-size type {dt}")
            if buf.nbytes != n * dt.itemsize:
                raise pickle.UnpicklingError(f"array of shape {shape} and type {dt} needs {n * dt.itemsize} "
                                             f"bytes, the pickle holds {buf.nbytes}")
            data = bytes(buf)
        np.ndarray.__setstate__(self, (1, shape, dt, bool(fortran), data))


def _reconstruct(subtype=None, shape=None, typecode=None):
    # numpy's ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b') then BUILD with the state.
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("numpy _reconstruct of something other than numpy.ndarray")
    _shape(shape)
    return np.ndarray.__new__(_UnpickledArray, (0,), np.int8)


def _frombuffer(buf=None, dspec=None, shape=None, order="C"):
    # numpy's protocol-5 reduction of a contiguous array: _frombuffer(buffer, dtype, shape, order).
    view, dt, shape = _buffer_of(buf, "array buffer"), _as_dtype(dspec), _shape(shape)
    if dt.hasobject or order not in ("C", "F"):
        raise pickle.UnpicklingError(f"numpy _frombuffer of type {dt} in order {_short_repr(order)}")
    n = _count(shape)
    if (dt.itemsize == 0 and n) or view.nbytes != n * dt.itemsize:
        raise pickle.UnpicklingError(f"array of shape {shape} and type {dt} needs {n * dt.itemsize} "
                                     f"bytes, the buffer holds {view.nbytes}")
    a = np.frombuffer(bytes(view), dtype=dt) if n else np.empty(0, dt)
    return a.reshape(shape, order=order).view(_UnpickledArray)


def _scalar(dspec=None, data=None):
    # numpy's scalar reduction: scalar(dtype, bytes). Returned as the Python value (str, int,
    # float, bool), which takes no pickle state.
    dt = _as_dtype(dspec)
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy scalar of object type")
    view = _buffer_of(data, "numpy scalar data")
    if view.nbytes != dt.itemsize:
        raise pickle.UnpicklingError(f"numpy scalar of type {dt} needs {dt.itemsize} bytes, got {view.nbytes}")
    return np.frombuffer(bytes(view), dtype=dt)[0].item() if dt.itemsize else dt.type().item()


def _encode(text=None, encoding="latin1"):
    # Python 3's protocol-2 pickle of bytes: _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode is admitted for latin1 text only, got "
                                     f"{type(text).__name__} {_short_repr(encoding)}")
    return text.encode("latin1")


def _container(kind):
    def make(items=()):
        if not isinstance(items, (list, tuple)):
            raise pickle.UnpicklingError(f"builtins.{kind.__name__} of a {type(items).__name__}")
        return kind(items)
    return make


_ADMITTED: dict[tuple[str, str], _Admitted] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Admitted("numpy.dtype", _DtypeSpec),
    ("_codecs", "encode"): _Admitted("_codecs.encode", _encode),
}
for _builtins in ("builtins", "__builtin__"):      # protocols 0-2 write Python 2's module name
    _ADMITTED[(_builtins, "set")] = _Admitted("builtins.set", _container(set))
    _ADMITTED[(_builtins, "frozenset")] = _Admitted("builtins.frozenset", _container(frozenset))
    _ADMITTED[(_builtins, "bytes")] = _Admitted("builtins.bytes", lambda: b"")   # protocols 0-2's b''
for _core in ("numpy._core", "numpy.core"):        # numpy >= 2 and numpy 1.x pickles
    _ADMITTED[(f"{_core}.multiarray", "_reconstruct")] = _Admitted("numpy _reconstruct", _reconstruct)
    _ADMITTED[(f"{_core}.multiarray", "scalar")] = _Admitted("numpy scalar", _scalar)
    _ADMITTED[(f"{_core}.numeric", "_frombuffer")] = _Admitted("numpy _frombuffer", _frombuffer)
ADMITTED_GLOBALS = tuple(sorted(f"{m}.{n}" for m, n in _ADMITTED))


class _LipdUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ADMITTED_GLOBALS` (to checked stand-ins)."""

    def find_class(self, module: str, name: str):
        try:
            return _ADMITTED[(module, name)]
        except (KeyError, TypeError):
            raise _Forbidden(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not supported")


# What a corrupt pickle can make the C unpickler or the stand-ins raise.
_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                    KeyError, OverflowError, MemoryError, RecursionError)


def _type_name(v: Any) -> str:
    return "ndarray" if isinstance(v, np.ndarray) else type(v).__name__


def load_lipd_pickle(path: str | Path) -> list[dict]:
    """Load one subset pickle and check it is a list of per-frame dicts.

    Only lists, dicts, tuples, sets, str, bytes, numbers and numpy arrays / scalars of plain types
    are read (:data:`ADMITTED_GLOBALS`); a pickle naming any other global (a class, a function
    such as ``os.system``) is refused with an :class:`ImporterError` before anything in it runs.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _LipdUnpickler(f).load()
    except FileNotFoundError:
        raise ImporterError(f"{path}: no such LIPD pickle") from None
    except IsADirectoryError:
        raise ImporterError(f"{path}: is a directory, not a LIPD pickle") from None
    except OSError as e:
        raise ImporterError(f"{path}: cannot read ({e.strerror or e})") from None
    except _Forbidden as e:
        raise ImporterError(f"{path}: refused: the pickle asks for the global {e}, which LIPD files do not "
                            f"hold (admitted: {', '.join(ADMITTED_GLOBALS)}); a pickle naming other "
                            f"globals can run code, so it is not loaded") from None
    except _UNPICKLE_ERRORS as e:
        raise ImporterError(f"{path}: not a readable pickle ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(data, list):
        raise ImporterError(f"{path}: expected a list of per-frame dicts, found {_type_name(data)}")
    for k, item in enumerate(data):
        if not isinstance(item, dict):
            raise ImporterError(f"{path}: item {k} is a {_type_name(item)}, expected a per-frame dict "
                                f"(keys pc, imu_ori, imu_acc, gt_joint, seq_path)")
        for key, value in item.items():
            if type(value) is _UnpickledArray:
                item[key] = value.view(np.ndarray)
    if not data:
        raise ImporterError(f"{path}: the pickle holds no frames")
    return data


@dataclass
class RawSequence:
    """The frames of one LIPD sequence as found in a pickle, before conversion."""

    subset: str
    subject: str
    name: str
    seq_path: str
    first_item: int                 # index of the sequence's first frame in the pickle
    frames: list[dict]
    source: Path

    @property
    def sequence_id(self) -> str:
        return f"{self.subset}/{self.subject}/{self.name}"


def subject_and_sequence(path: str, subset: str, *, is_file: bool) -> tuple[str, str, bool]:
    """Subject and sequence names from a frame path; the bool says whether the fallback was used.

    LIPD_train/LIPD_test take components 3 and 4 of ``path.split('/')``, the other subsets 4 and 5
    (DeSPITE's rule). A path too short for that, or whose component is the file itself, falls
    back to its last two directory components. ``is_file``: the path ends in a file name.
    """
    parts = [p for p in str(path).replace("\\", "/").split("/")]
    i, j = _PATH_PARTS.get(subset, _DEFAULT_PATH_PARTS)
    dirs = parts[:-1] if is_file else parts
    if j < len(dirs) and parts[i] and parts[j]:
        return parts[i], parts[j], False
    dirs = [p for p in dirs if p not in ("", ".")]
    if len(dirs) >= 2:
        return dirs[-2], dirs[-1], True
    if len(dirs) == 1:
        return "unknown", dirs[0], True
    raise ValueError(f"cannot take a subject and sequence from path {path!r}")


def split_sequences(frames: list[dict], subset: str, source: Path, log: WarningLog) -> list[RawSequence]:
    """Cut a subset's frame list into sequences where ``seq_path`` changes (frames are in order)."""
    out: list[RawSequence] = []
    used: set[str] = set()
    start = 0
    for k in range(1, len(frames) + 1):
        if k < len(frames) and _seq_path(frames, k, source) == _seq_path(frames, start, source):
            continue
        first = frames[start]
        seq_path = _seq_path(frames, start, source)
        # DeSPITE names a sequence after its point-file path; frames whose clouds are inline
        # arrays only have seq_path to go by.
        pc = first.get("pc")
        id_path, is_file = (pc, True) if isinstance(pc, str) else (seq_path, False)
        try:
            subject, name, fallback = subject_and_sequence(id_path, subset, is_file=is_file)
        except ValueError as e:
            raise ImporterError(f"{source}: item {start}: {e}") from None
        if fallback:
            log.warn(f"{source.name}: path {id_path!r} is shorter than the usual {subset} layout; "
                     f"took subject {subject!r} and sequence {name!r} from its last two directories",
                     kind=f"{subset}: short paths, subject/sequence from the last two directories")
        raw = RawSequence(subset, subject, name, seq_path, start, frames[start:k], source)
        if raw.sequence_id in used:
            # seq_path changed but the id did not: keep both recordings, under distinct ids.
            n = 2
            while f"{raw.sequence_id}#{n}" in used:
                n += 1
            log.warn(f"{source.name}: sequence id {raw.sequence_id!r} occurs again at item {start} "
                     f"(seq_path {seq_path!r}); stored as {raw.name}#{n}", kind=f"{subset}: repeated ids")
            raw.name = f"{raw.name}#{n}"
        used.add(raw.sequence_id)
        out.append(raw)
        start = k
    return out


def _seq_path(frames: list[dict], k: int, source: Path) -> str:
    """Item ``k``'s ``seq_path``: a string (a list or number there would be a corrupt pickle)."""
    if "seq_path" not in frames[k]:
        raise ImporterError(f"{source}: item {k}: field 'seq_path' is missing")
    value = frames[k]["seq_path"]
    if not isinstance(value, str):
        raise ImporterError(f"{source}: item {k}: field 'seq_path' is a {type(value).__name__}, expected a string")
    return value


def _array(frame: dict, key: str, size: int, shape: tuple[int, ...], where: str) -> np.ndarray:
    if key not in frame:
        raise ImporterError(f"{where}: field {key!r} is missing")
    try:
        a = np.asarray(frame[key], dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as e:   # OverflowError: an int beyond float range
        raise ImporterError(f"{where}: field {key!r} is not numeric ({e})") from None
    if a.size != size:
        raise ImporterError(f"{where}: field {key!r} has shape {a.shape} ({a.size} numbers), expected "
                            f"{size} numbers, reshaped to {shape}")
    return a.reshape(shape)


def read_points(pc: Any, root: Path, where: str) -> np.ndarray:
    """A frame's cloud (N, 3) float32 metres from its ``pc`` entry (a path or an array)."""
    if isinstance(pc, (str, Path)):
        s = str(pc)
        path = Path(s) if Path(s).is_absolute() else root / (s[2:] if s.startswith("./") else s)
        try:
            if not path.is_file():
                raise ImporterError(f"{where}: field 'pc': point file {path} does not exist "
                                    f"(relative paths in the pickles are taken from --root {root})")
            size = path.stat().st_size
            if size % 12:
                raise ImporterError(f"{where}: field 'pc': point file {path} has {size} bytes, not a whole "
                                    f"number of float32 (x, y, z) points (12 bytes each)")
            return np.fromfile(path, dtype="<f4").reshape(-1, 3)
        except OSError as e:     # a name too long, a directory without permission, ...
            raise ImporterError(f"{where}: field 'pc': point file {str(path)[:300]} cannot be read "
                                f"({e.strerror or e})") from None
    try:
        a = np.asarray(pc, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as e:
        raise ImporterError(f"{where}: field 'pc' is neither a path nor a numeric array ({e})") from None
    if a.size % 3:
        raise ImporterError(f"{where}: field 'pc' holds {a.size} numbers (shape {a.shape}), not (N, 3)")
    return a.reshape(-1, 3)


def convert_sequence(raw: RawSequence, root: Path, layout: ImuLayout, fps: float) -> Sequence:
    """The store sequence of one LIPD sequence: points, IMU at ``layout.sites``, joints; labels -1."""
    slot_idx = [SLOTS.index(s) for s in layout.sites]
    t = len(raw.frames)
    imu = np.empty((t, len(slot_idx), layout.width), np.float32)
    rot, acc = layout.slice("rotmat"), layout.slice("acc")
    points: list[np.ndarray] = []
    has_joints = "gt_joint" in raw.frames[0]
    joints = np.empty((t, len(SMPL_JOINT_NAMES), 3), np.float32) if has_joints else None
    for i, frame in enumerate(raw.frames):
        where = (f"{raw.source}: sequence {raw.sequence_id!r} (seq_path {raw.seq_path!r}) frame {i} "
                 f"(pickle item {raw.first_item + i})")
        if "pc" not in frame:
            raise ImporterError(f"{where}: field 'pc' is missing")
        points.append(read_points(frame["pc"], root, where))
        ori = _array(frame, "imu_ori", 54, (6, 9), where)
        a = _array(frame, "imu_acc", 18, (6, 3), where)
        imu[i, :, rot] = ori[slot_idx]
        imu[i, :, acc] = a[slot_idx]
        if ("gt_joint" in frame) != has_joints:
            raise ImporterError(f"{where}: field 'gt_joint' is present in some frames of the sequence "
                                f"and missing in others")
        if joints is not None:
            joints[i] = _array(frame, "gt_joint", 72, (24, 3), where)
    return Sequence(
        sequence_id=raw.sequence_id, subject=raw.subject, fps=fps, timestamps=frame_times(t, fps),
        labels=np.full(t, -1, np.int16), points=points, imu=imu, joints=joints,
        scene=raw.sequence_id, person=1,
        attrs={"subset": raw.subset, "seq_path": raw.seq_path, "source": raw.source.name,
               "first_item": raw.first_item},
    )


# ------------------------------------------------------------------------------------------- BABEL

@dataclass
class BabelEntry:
    """One BABEL annotation: which file it came from and its labels (times in seconds)."""

    sid: str
    file: str                              # "train", "val", "extra_train", ...
    feat_p: str
    dur: float
    seq_labels: list[dict] = field(default_factory=list)
    frame_labels: list[dict] | None = None  # None: the sequence only has sequence-level labels

    @property
    def split(self) -> str | None:
        """lipd_babel_v2 side: dense train.json -> "train", val.json -> "test", extras -> None."""
        return {"train": "train", "val": "test"}.get(self.file)


def babel_feat_path(subset: str, subject: str, sequence: str) -> str | None:
    """BABEL's ``feat_p`` (AMASS path) of a LIPD sequence, None for subsets BABEL does not cover.

    ACCAD: ``Female1General_c3d/A1_-_Stand_stageii`` -> ``ACCAD/ACCAD/Female1General_c3d/A1 - Stand_poses.npz``;
    BMLmovi, CMU, TC_test: ``stageii`` -> ``poses.npz`` under ``<dataset>/<dataset>/<subject>/``.
    """
    dataset = _BABEL_DATASET.get(subset)
    if dataset is None:
        return None
    if subset == "ACCAD":
        name = sequence.replace("_", " ").replace(" stageii", "_poses.npz")
    else:
        name = sequence.replace("stageii", "poses.npz")
    return f"{dataset}/{dataset}/{subject}/{name}"


def _norm_feat_p(p: str) -> str:
    p = str(p).replace("\\", "/")
    return p[2:] if p.startswith("./") else p.lstrip("/")


def load_babel(babel_dir: str | Path) -> dict[str, BabelEntry]:
    """BABEL annotations keyed by ``feat_p``. Dense train/val take precedence over extra_*.json."""
    babel_dir = Path(babel_dir)
    files = [babel_dir / f"{n}.json" for n in _BABEL_DENSE if (babel_dir / f"{n}.json").is_file()]
    files += sorted(babel_dir.glob("extra_*.json"))
    if not files:
        raise ImporterError(f"{babel_dir}: no BABEL files (expected train.json, val.json, extra_*.json)")
    out: dict[str, BabelEntry] = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ImporterError(f"{path}: cannot read BABEL JSON ({e})") from None
        if not isinstance(data, dict):
            raise ImporterError(f"{path}: expected a dict keyed by babel_sid, found {type(data).__name__}")
        extra = path.stem.startswith("extra_")
        for sid, e in data.items():
            where = f"{path}: babel_sid {sid}"
            if not isinstance(e, dict) or "feat_p" not in e or "dur" not in e:
                raise ImporterError(f"{where}: entry lacks 'feat_p' or 'dur'")
            if extra:
                # extra files hold several annotations per sequence; the first is used.
                seq_anns, frame_anns = e.get("seq_anns") or [], e.get("frame_anns") or []
                seq_ann = seq_anns[0] if seq_anns else None
                frame_ann = frame_anns[0] if frame_anns else None
            else:
                seq_ann, frame_ann = e.get("seq_ann"), e.get("frame_ann")
            try:
                seq_labels = list(seq_ann["labels"]) if seq_ann else []
                frame_labels = list(frame_ann["labels"]) if frame_ann else None
                for lab in seq_labels + (frame_labels or []):
                    str(lab["raw_label"])
                for lab in frame_labels or []:
                    float(lab["start_t"]), float(lab["end_t"])
                dur = float(e["dur"])
            except (KeyError, TypeError, ValueError) as err:
                raise ImporterError(f"{where}: malformed annotation ({type(err).__name__}: {err}); "
                                    f"expected labels with raw_label (and start_t, end_t in frame_ann)") from None
            key = _norm_feat_p(e["feat_p"])
            if key in out:
                continue
            out[key] = BabelEntry(str(sid), path.stem, key, dur, seq_labels, frame_labels)
    return out


def babel_frame_labels(entry: BabelEntry, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame class index (BABEL_CLASSES, -1 = none) and raw-label text at ``times`` (s).

    Frame ``i`` takes the frame_ann segment containing its stamp (the shortest where several
    overlap). Without frame_ann, the sequence labels cover every frame: their raw labels joined by
    " and " as text, and the class only when exactly one of them is a class name.
    """
    if entry.frame_labels is not None:
        segs = [(float(lab["start_t"]), float(lab["end_t"]), str(lab["raw_label"]))
                for lab in entry.frame_labels]
        text = segments_to_frames(times, segs, empty="")
    else:
        raws = [str(lab["raw_label"]) for lab in entry.seq_labels]
        text = [" and ".join(raws)] * len(times)
        known = {r for r in raws if r in BABEL_CLASSES}
        cls = BABEL_CLASSES.index(known.pop()) if len(known) == 1 else -1
        return np.full(len(times), cls, np.int16), np.asarray(text, dtype=str)
    labels = np.array([BABEL_CLASSES.index(s) if s in BABEL_CLASSES else -1 for s in text], np.int16)
    return labels, np.asarray(text, dtype=str)


# ------------------------------------------------------------------------------------------ import

def import_lipd(root: str | Path, out: str | Path, *, subsets: list[str] | None = None,
                babel_dir: str | Path | None = None, all_sites: bool = False, acc_frame: str = "world",
                gravity: str = "removed", subset_fps: dict[str, float] | None = None,
                babel_max_frame_diff: float = 2.0, overwrite: bool = False) -> dict[str, Any]:
    """Import LIPD subset pickles from ``root`` into a store at ``out``; return the run summary.

    ``subsets``: names from SUBSETS (default: every one whose pickle exists). ``subset_fps``:
    frame rate per subset where it is not 10 fps. A BABEL match is only labelled when the
    sequence's length agrees with the annotation's duration within ``babel_max_frame_diff``
    frames (DeSPITE keeps only those too).
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ImporterError(f"{root}: LIPD root is not a directory")
    if subsets:
        unknown = [s for s in subsets if s not in SUBSETS]
        if unknown:
            raise ImporterError(f"unknown LIPD subset(s) {unknown}; known: {list(SUBSETS)}")
        missing = [s for s in subsets if not (root / f"{s}.pkl").is_file()]
        if missing:
            raise ImporterError(f"{root}: missing pickle(s) {[s + '.pkl' for s in missing]}")
        chosen = list(subsets)
    else:
        chosen = [s for s in SUBSETS if (root / f"{s}.pkl").is_file()]
        if not chosen:
            raise ImporterError(f"{root}: no LIPD pickles found; expected some of "
                                f"{[s + '.pkl' for s in SUBSETS]}")
    fps_of = {s: float((subset_fps or {}).get(s, DEFAULT_FPS)) for s in chosen}
    layout = lipd_layout(all_sites, acc_frame, gravity)
    log = WarningLog()
    log.warn(f"LIPD IMU convention is not documented; declaring acc_frame={acc_frame!r}, "
             f"gravity={gravity!r}, world={WORLD!r} (see docs/importers.md)", kind="lipd convention")
    babel = load_babel(babel_dir) if babel_dir is not None else None

    per_subset: dict[str, dict[str, int]] = {}
    babel_stats = {"matched": 0, "labelled": 0, "length_mismatch": 0, "unmatched": 0}
    v1: dict[str, list[str]] = {"train": [], "test": []}
    v2: dict[str, list[str]] = {"train": [], "test": []}
    with StoreWriter(out, BABEL_CLASSES, imu_layout=layout, joint_names=SMPL_JOINT_NAMES,
                     source="LIPD", overwrite=overwrite,
                     description="LIPD LiDAR person clouds, 6-slot IMU, SMPL joints"
                                 + (", BABEL labels" if babel is not None else "")) as writer:
        for subset in chosen:
            path = root / f"{subset}.pkl"
            frames = load_lipd_pickle(path)
            raws = split_sequences(frames, subset, path, log)
            del frames
            n_frames = 0
            for raw in progress(raws, desc=f"LIPD {subset}", unit="seq"):
                seq = convert_sequence(raw, root, layout, fps_of[subset])
                if babel is not None:
                    _attach_babel(seq, raw, babel, babel_max_frame_diff, babel_stats, v2, log)
                try:
                    writer.add(seq)
                except StoreError as e:
                    raise wrap_store_error(path, e) from None
                n_frames += seq.num_frames
                if subset in V1_TRAIN:
                    v1["train"].append(seq.sequence_id)
                elif subset in V1_TEST:
                    v1["test"].append(seq.sequence_id)
            per_subset[subset] = {"sequences": len(raws), "frames": n_frames}
        writer.add_split("lipd_babel_v1", v1)
        if babel is not None:
            writer.add_split("lipd_babel_v2", v2)
    extra: dict[str, Any] = {"format": "lipd", "subsets": per_subset}
    if babel is not None:
        extra["babel"] = babel_stats
    extra["warnings"] = log.finish()
    return store_summary(out, extra)


def _attach_babel(seq: Sequence, raw: RawSequence, babel: dict[str, BabelEntry], max_diff: float,
                  stats: dict[str, int], v2: dict[str, list[str]], log: WarningLog) -> None:
    feat_p = babel_feat_path(raw.subset, raw.subject, raw.name)
    if feat_p is None:
        return
    entry = babel.get(feat_p)
    if entry is None:
        stats["unmatched"] += 1
        return
    stats["matched"] += 1
    seq.attrs.update(babel_sid=entry.sid, babel_file=entry.file, babel_feat_p=feat_p, babel_dur=entry.dur)
    expected = entry.dur * seq.fps
    if abs(seq.num_frames - expected) > max_diff:
        # Labels placed on a clock that does not fit would be wrong, not just shifted.
        stats["length_mismatch"] += 1
        seq.attrs["babel_status"] = "length_mismatch"
        log.warn(f"{raw.source.name}: sequence {seq.sequence_id!r} has {seq.num_frames} frames at "
                 f"{seq.fps:g} fps but BABEL {entry.sid} lasts {entry.dur:.2f} s ({expected:.1f} frames); "
                 f"left unlabelled (if the subset runs at another rate, pass --subset-fps "
                 f"{raw.subset}={seq.num_frames / entry.dur:.3g})",
                 kind=f"{raw.subset}: BABEL length mismatch")
        return
    seq.labels, seq.text = babel_frame_labels(entry, seq.timestamps)
    seq.attrs["babel_status"] = "labelled"
    stats["labelled"] += 1
    if entry.split is not None:
        v2[entry.split].append(seq.sequence_id)


# --------------------------------------------------------------------------------------------- CLI

def _subset_fps(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        fps = float(value)
    except ValueError:
        fps = float("nan")
    if not sep or name not in SUBSETS or not fps > 0:
        raise argparse.ArgumentTypeError(f"expected SUBSET=FPS with SUBSET in {list(SUBSETS)}, got {text!r}")
    return name, fps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``despite import lipd``."""
    parser.add_argument("--root", required=True, type=Path,
                        help="LIPD folder holding the subset pickles (and the paths they name)")
    parser.add_argument("--babel", type=Path, default=None, metavar="DIR",
                        help="BABEL release folder (train.json, val.json, extra_*.json) for labels and text")
    parser.add_argument("--subsets", nargs="+", choices=SUBSETS, default=None, metavar="SUBSET",
                        help=f"subsets to import, of {', '.join(SUBSETS)} (default: every pickle present)")
    parser.add_argument("--all-sites", action="store_true",
                        help="also import IMU slots 4 (head, inferred) and 5 (pelvis)")
    parser.add_argument("--acc-frame", choices=ACC_FRAMES, default="world",
                        help="declare the frame of imu_acc (default world; LIPD does not document it)")
    parser.add_argument("--gravity", choices=GRAVITY_CONVENTIONS, default="removed",
                        help="declare imu_acc's gravity convention (default removed; undocumented)")
    parser.add_argument("--subset-fps", type=_subset_fps, action="append", default=[], metavar="SUBSET=FPS",
                        help=f"frame rate of a subset if not {DEFAULT_FPS:g} fps (repeatable)")
    parser.add_argument("--babel-max-frame-diff", type=float, default=2.0, metavar="N",
                        help="label a BABEL match only if its length agrees within N frames (default 2)")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``despite import lipd`` from parsed flags; returns the JSON summary."""
    return import_lipd(
        args.root, args.out, subsets=args.subsets, babel_dir=args.babel, all_sites=args.all_sites,
        acc_frame=args.acc_frame, gravity=args.gravity, subset_fps=dict(args.subset_fps),
        babel_max_frame_diff=args.babel_max_frame_diff, overwrite=args.overwrite,
    )
