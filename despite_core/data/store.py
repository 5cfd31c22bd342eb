"""The sequence store: the one on-disk format every importer writes and every trainer reads.

Specified in docs/data-format.md (keep the two in step). A store is a directory:

    meta.json            format, class names, IMU layout, joint names, sequences and their shards
    shard-00000.npz ...  whole sequences, arrays keyed "<k>/<field>" (k = position in the shard)
    splits/<scheme>.json optional named splits: {"train": [sequence ids], "test": [...], ...}

numpy + json only: no pickle anywhere (``allow_pickle=False``), so a store is safe to open.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

import numpy as np

from despite_core.data.imu_layout import ImuLayout, ImuLayoutError

FORMAT = "despite-sequence-store"
FORMAT_VERSION = 1
MODALITIES = ("points", "imu", "joints")
SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class StoreError(ValueError):
    """A store or a sequence is malformed. The message names the shard, sequence and field."""


@dataclass
class Sequence:
    """One continuous recording of one person (one subject), any subset of modalities.

    Shapes: ``timestamps`` (T,) float64 s, strictly increasing; ``labels`` (T,) int, -1 =
    unlabelled; ``text`` (T,) str, "" = no text; ``points`` list of T arrays (N_t, 3) float32
    metres (N_t may be 0); ``imu`` (T, sites, width) float32 as the store's IMU layout;
    ``joints`` (T, J, 3) float32 metres in the store's joint order.
    ``scene`` groups sequences recorded together (same clock, same LiDAR), ``person`` is the
    person's id within the scene (``gt_person`` in synthetic clouds, wearer ``person_<k>``).
    """

    sequence_id: str
    subject: str
    fps: float
    timestamps: np.ndarray
    labels: np.ndarray
    text: np.ndarray | None = None
    points: list[np.ndarray] | None = None
    imu: np.ndarray | None = None
    joints: np.ndarray | None = None
    scene: str = ""
    person: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(len(self.timestamps))

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)


def _fail(where: str, msg: str) -> StoreError:
    return StoreError(f"{where}: {msg}")


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _short(v: Any) -> str:
    """A bounded description of a value read from a store, for error messages."""
    if isinstance(v, str):
        return repr(v[:60]) + ("..." if len(v) > 60 else "")
    if isinstance(v, (bool, float, type(None), np.floating)) or (isinstance(v, (int, np.integer)) and abs(v) < 10 ** 30):
        return repr(v)
    return _kind(v)


def _is_real(v: Any) -> bool:
    """A real number (Python's or numpy's int or float), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _positive_finite(v: Any) -> bool:
    if not _is_real(v):
        return False
    try:
        x = float(v)
    except OverflowError:                              # an integer beyond the float range
        return False
    return math.isfinite(x) and x > 0


def checked_imu_layout(d: Any) -> ImuLayout:
    """:meth:`ImuLayout.from_dict` of a layout read from JSON or YAML (a store's meta.json, a bundle's
    model.yaml), its types checked first: a mapping with string keys, ``sites`` and ``channels``
    lists of non-empty strings, ``acc_frame``, ``gravity``, ``world`` strings, ``extra`` a mapping.
    Raises :class:`ImuLayoutError`."""
    if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
        raise ImuLayoutError(f"expected a mapping of IMU layout keys, got {_short(d)}")
    for key in ("sites", "channels"):
        if key in d and not (isinstance(d[key], list) and all(isinstance(x, str) and x for x in d[key])):
            raise ImuLayoutError(f"{key!r} must be a list of names, got {_short(d[key])}")
    for key in ("acc_frame", "gravity", "world"):
        if key in d and not isinstance(d[key], str):
            raise ImuLayoutError(f"{key!r} must be a string, got {_short(d[key])}")
    if "extra" in d and not isinstance(d["extra"], dict):
        raise ImuLayoutError(f"'extra' must be a mapping, got {_short(d['extra'])}")
    return ImuLayout.from_dict(d)


def _names_ok(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def _safe_file_name(v: Any) -> bool:
    """A relative path inside the store (no absolute path, no '..', no backslash)."""
    if not isinstance(v, str) or not v or "\\" in v or "\0" in v:
        return False
    p = PurePosixPath(v)
    return not p.is_absolute() and ".." not in p.parts and p.name not in ("", ".")


_ENTRY_REQUIRED = {"shard": "a shard file name inside the store", "index": "an integer >= 0",
                   "subject": "a string", "fps": "a finite number > 0", "frames": "an integer >= 1",
                   "modalities": f"a non-empty list of distinct names among {list(MODALITIES)}"}


def _entry_problem(key: str, v: Any) -> bool:
    """Whether a sequence entry's value for ``key`` is not of its type (see _ENTRY_REQUIRED)."""
    integer = isinstance(v, int) and not isinstance(v, bool)
    return not {
        "shard": lambda: _safe_file_name(v),
        "index": lambda: integer and v >= 0,
        "subject": lambda: isinstance(v, str),
        "fps": lambda: _positive_finite(v),
        "frames": lambda: integer and v >= 1,
        "modalities": lambda: (isinstance(v, list) and bool(v) and all(isinstance(m, str) and m in MODALITIES for m in v)
                               and len(set(v)) == len(v)),
        "has_text": lambda: isinstance(v, bool),
        "scene": lambda: isinstance(v, str),
        "person": lambda: integer,
        "attrs": lambda: isinstance(v, dict),
    }[key]()


def check_store_meta(meta: Any, meta_path: Path | str = "meta.json") -> None:
    """Raise :class:`StoreError` naming ``meta_path`` and the field unless a parsed meta.json has
    the format's fields with their types (docs/data-format.md): format, format_version,
    class_names (non-empty list of strings), source / description strings, imu_layout null or an
    object, joint_names null or a list of names, shards a list of {file, sequences}, sequences an
    object of id -> {shard, index, subject, fps, frames, modalities[, has_text, scene, person, attrs]}.
    Fills the optional entry fields' defaults (scene "", person 0, attrs {})."""
    if not isinstance(meta, dict):
        raise StoreError(f"{meta_path}: expected a JSON object of store fields, got {_kind(meta)}")
    if meta.get("format") != FORMAT:
        raise StoreError(f"{meta_path}: 'format' is {_short(meta.get('format'))}, expected {FORMAT!r}")
    version = meta.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise StoreError(f"{meta_path}: format_version {_short(version)} is not supported "
                         f"(this version reads {FORMAT_VERSION})")
    for key in ("class_names", "shards", "sequences"):
        if key not in meta:
            raise StoreError(f"{meta_path}: missing key {key!r}")

    def bad(key: str, want: str, got: Any) -> StoreError:
        return StoreError(f"{meta_path}: field {key!r} must be {want}, got {_short(got)}")

    if not (_names_ok(meta["class_names"]) and meta["class_names"]):
        raise bad("class_names", "a non-empty list of class names", meta["class_names"])
    for key in ("source", "description"):
        if not isinstance(meta.get(key, ""), str):
            raise bad(key, "a string", meta[key])
    if meta.get("imu_layout") is not None and not isinstance(meta["imu_layout"], dict):
        raise bad("imu_layout", "null or an object (the IMU layout)", meta["imu_layout"])
    if meta.get("joint_names") is not None and not _names_ok(meta["joint_names"]):
        raise bad("joint_names", "null or a list of joint names", meta["joint_names"])
    shards = meta["shards"]
    if not isinstance(shards, list):
        raise bad("shards", "a list of {file, sequences}", shards)
    for i, sh in enumerate(shards):
        if not (isinstance(sh, dict) and _safe_file_name(sh.get("file")) and _names_ok(sh.get("sequences"))):
            raise bad(f"shards[{i}]", "{file: a shard file name, sequences: [sequence ids]}", sh)
    seqs = meta["sequences"]
    if not isinstance(seqs, dict):
        raise bad("sequences", "an object of sequence id -> {shard, index, subject, fps, frames, modalities, ...}", seqs)
    for sid, e in seqs.items():
        where = f"{meta_path}: sequence {_short(sid)}"
        if not sid:
            raise StoreError(f"{where}: a sequence id must be a non-empty string")
        if not isinstance(e, dict):
            raise StoreError(f"{where}: expected an object {{shard, index, subject, fps, frames, modalities, ...}}, "
                             f"got {_short(e)}")
        for key, want in _ENTRY_REQUIRED.items():
            if key not in e:
                raise StoreError(f"{where}: missing field {key!r} ({want})")
            if _entry_problem(key, e[key]):
                raise StoreError(f"{where}: field {key!r} must be {want}, got {_short(e[key])}")
        for key, want in (("has_text", "true or false"), ("scene", "a string"), ("person", "an integer"),
                          ("attrs", "an object")):
            if key in e and _entry_problem(key, e[key]):
                raise StoreError(f"{where}: field {key!r} must be {want}, got {_short(e[key])}")
        e.setdefault("scene", "")
        e.setdefault("person", 0)
        e.setdefault("attrs", {})


def _read_json(path: Path) -> Any:
    """A JSON file of the store, or a StoreError naming it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise StoreError(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise StoreError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}: invalid JSON ({e})") from None
    except (ValueError, RecursionError) as e:          # a number of over 4300 digits; nesting too deep
        raise StoreError(f"{path}: invalid JSON ({type(e).__name__}: {str(e)[:200]})") from None


def _as_array(value, where: str, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:              # ragged nested lists, ...
        raise _fail(where, f"field {name!r} is not an array ({str(e)[:120]})") from None


def _check_real(arr: np.ndarray, where: str, name: str) -> None:
    """Numbers of a real kind: floating point or integer (not complex, bool, text or objects)."""
    if arr.dtype.kind not in "fiu":
        raise _fail(where, f"field {name!r} must hold real numbers (float or int), got dtype {arr.dtype}")


def _check_finite(arr: np.ndarray, where: str, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), arr.shape)
        raise _fail(where, f"field {name!r} holds NaN/Inf (first at index {tuple(int(i) for i in idx)})")


def validate_sequence(seq: Sequence, *, num_classes: int, imu_layout: ImuLayout | None,
                      joint_names: tuple[str, ...] | None, where: str = "") -> None:
    """Raise :class:`StoreError` naming ``where`` (shard), the sequence and the field at fault."""
    where = f"{where + ', ' if where else ''}sequence {seq.sequence_id!r}"
    if not seq.sequence_id or not isinstance(seq.sequence_id, str):
        raise _fail(where, "sequence_id must be a non-empty string")
    if not _positive_finite(seq.fps):
        raise _fail(where, f"field 'fps' must be a positive number, got {_short(seq.fps)}")
    ts = _as_array(seq.timestamps, where, "timestamps")
    if ts.ndim != 1 or ts.size == 0:
        raise _fail(where, f"field 'timestamps' must have shape (T,) with T >= 1, got {ts.shape}")
    _check_real(ts, where, "timestamps")
    _check_finite(ts, where, "timestamps")
    bad = np.nonzero(np.diff(ts) <= 0)[0]
    if bad.size:
        i = int(bad[0])
        raise _fail(where, f"field 'timestamps' is not strictly increasing at frame {i + 1} "
                           f"({ts[i]:.6f} s then {ts[i + 1]:.6f} s)")
    t = ts.size
    labels = _as_array(seq.labels, where, "labels")
    if labels.shape != (t,):
        raise _fail(where, f"field 'labels' has shape {labels.shape}, expected ({t},) like 'timestamps'")
    if not np.issubdtype(labels.dtype, np.integer):
        raise _fail(where, f"field 'labels' must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < -1 or labels.max() >= num_classes):
        raise _fail(where, f"field 'labels' holds values in [{labels.min()}, {labels.max()}]; "
                           f"allowed: -1 (unlabelled) or 0..{num_classes - 1}")
    if seq.text is not None:
        text = _as_array(seq.text, where, "text")
        if text.shape != (t,) or text.dtype.kind != "U":
            raise _fail(where, f"field 'text' must be ({t},) strings, got shape {text.shape} dtype {text.dtype}")
    if not seq.modalities:
        raise _fail(where, "holds no modality (points, imu or joints)")
    if seq.points is not None:
        if len(seq.points) != t:
            raise _fail(where, f"field 'points' has {len(seq.points)} frames, 'timestamps' has {t}")
        for i, p in enumerate(seq.points):
            p = _as_array(p, where, f"points[{i}]")
            if p.ndim != 2 or p.shape[1] != 3:
                raise _fail(where, f"field 'points' frame {i} has shape {p.shape}, expected (N, 3)")
            _check_real(p, where, f"points[{i}]")
            _check_finite(p, where, f"points[{i}]")
    if seq.imu is not None:
        if imu_layout is None:
            raise _fail(where, "field 'imu' present but the store declares no IMU layout")
        imu = _as_array(seq.imu, where, "imu")
        want = (t, len(imu_layout.sites), imu_layout.width)
        if imu.shape != want:
            raise _fail(where, f"field 'imu' has shape {imu.shape}, expected {want} "
                               f"(T, sites {list(imu_layout.sites)}, channels {list(imu_layout.channels)})")
        _check_real(imu, where, "imu")
        _check_finite(imu, where, "imu")
    if seq.joints is not None:
        if joint_names is None:
            raise _fail(where, "field 'joints' present but the store declares no joint names")
        j = _as_array(seq.joints, where, "joints")
        if j.shape != (t, len(joint_names), 3):
            raise _fail(where, f"field 'joints' has shape {j.shape}, expected ({t}, {len(joint_names)}, 3)")
        _check_real(j, where, "joints")
        _check_finite(j, where, "joints")


class StoreWriter:
    """Writes a store. Use as a context manager; sequences are validated as they are added.

    Sequences are buffered and flushed to a shard once ``shard_frames`` frames have accumulated
    (shards of whole sequences; a long sequence gets a shard of its own).
    """

    def __init__(self, root: str | os.PathLike, class_names: Iterable[str], *,
                 imu_layout: ImuLayout | None = None, joint_names: Iterable[str] | None = None,
                 source: str = "", description: str = "", shard_frames: int = 20000,
                 overwrite: bool = False) -> None:
        self.root = Path(root)
        if (self.root / "meta.json").exists() and not overwrite:
            raise StoreError(f"{self.root}: a store exists here already (pass overwrite to replace it)")
        self.root.mkdir(parents=True, exist_ok=True)
        for old in list(self.root.glob("shard-*.npz")) + list(self.root.glob("splits/*.json")):
            old.unlink()
        (self.root / "meta.json").unlink(missing_ok=True)
        self.class_names = tuple(class_names)
        if not self.class_names:
            raise StoreError("a store needs at least one class name")
        self.imu_layout = imu_layout
        self.joint_names = tuple(joint_names) if joint_names is not None else None
        self.source = source
        self.description = description
        self.shard_frames = shard_frames
        self._pending: list[Sequence] = []
        self._pending_frames = 0
        self._shards: list[dict[str, Any]] = []
        self._sequences: dict[str, dict[str, Any]] = {}
        self._splits: dict[str, dict[str, list[str]]] = {}
        self._closed = False

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    @property
    def sequence_ids(self) -> list[str]:
        """Ids of every sequence added so far (written or still buffered)."""
        return list(self._sequences) + [s.sequence_id for s in self._pending]

    def add(self, seq: Sequence) -> None:
        if seq.sequence_id in self._sequences or any(s.sequence_id == seq.sequence_id for s in self._pending):
            raise StoreError(f"sequence {seq.sequence_id!r} added twice")
        validate_sequence(seq, num_classes=len(self.class_names), imu_layout=self.imu_layout,
                          joint_names=self.joint_names, where=str(self.root))
        self._pending.append(seq)
        self._pending_frames += seq.num_frames
        if self._pending_frames >= self.shard_frames:
            self._flush()

    def add_split(self, scheme: str, splits: dict[str, list[str]]) -> None:
        """Declare a named split scheme, e.g. ``add_split("by_subject", {"train": [...], "test": [...]})``."""
        if not _SPLIT_NAME.match(scheme):
            raise StoreError(f"split scheme name {scheme!r} must match {_SPLIT_NAME.pattern}")
        self._splits[scheme] = {k: list(v) for k, v in splits.items()}

    def _flush(self) -> None:
        if not self._pending:
            return
        name = f"shard-{len(self._shards):05d}.npz"
        arrays: dict[str, np.ndarray] = {}
        for k, s in enumerate(self._pending):
            arrays[f"{k}/timestamps"] = np.asarray(s.timestamps, np.float64)
            arrays[f"{k}/labels"] = np.asarray(s.labels, np.int16)
            if s.text is not None:
                arrays[f"{k}/text"] = np.asarray(s.text, dtype=str)
            if s.points is not None:
                counts = np.array([len(p) for p in s.points], np.int64)
                arrays[f"{k}/points_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
                arrays[f"{k}/points"] = (np.concatenate([np.asarray(p, np.float32) for p in s.points])
                                         if counts.sum() else np.zeros((0, 3), np.float32))
            if s.imu is not None:
                arrays[f"{k}/imu"] = np.asarray(s.imu, np.float32)
            if s.joints is not None:
                arrays[f"{k}/joints"] = np.asarray(s.joints, np.float32)
            self._sequences[s.sequence_id] = {
                "shard": name, "index": k, "subject": s.subject, "fps": float(s.fps),
                "frames": s.num_frames, "modalities": list(s.modalities), "has_text": s.text is not None,
                "scene": s.scene, "person": int(s.person), "attrs": s.attrs,
            }
        np.savez(self.root / name, **arrays)
        self._shards.append({"file": name, "sequences": [s.sequence_id for s in self._pending]})
        self._pending, self._pending_frames = [], 0

    def close(self) -> None:
        if self._closed:
            return
        self._flush()
        known = set(self._sequences)
        if self._splits:
            (self.root / "splits").mkdir(exist_ok=True)
        for scheme, splits in self._splits.items():
            for split, ids in splits.items():
                unknown = sorted(set(ids) - known)
                if unknown:
                    raise StoreError(f"split {scheme}/{split} lists unknown sequences {unknown[:5]}")
            (self.root / "splits" / f"{scheme}.json").write_text(json.dumps(splits, indent=1))
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "source": self.source,
            "description": self.description, "class_names": list(self.class_names),
            "imu_layout": self.imu_layout.to_dict() if self.imu_layout else None,
            "joint_names": list(self.joint_names) if self.joint_names else None,
            "shards": self._shards, "sequences": self._sequences,
        }
        (self.root / "meta.json").write_text(json.dumps(meta, indent=1))
        self._closed = True


class Store:
    """Read access to a store. ``Store(path)`` checks meta.json; ``read(id)`` validates a sequence."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise StoreError(f"{self.root}: not a sequence store (no meta.json)")
        meta = _read_json(meta_path)
        check_store_meta(meta, meta_path)
        self.meta = meta
        self.class_names: tuple[str, ...] = tuple(meta["class_names"])
        try:
            self.imu_layout = checked_imu_layout(meta["imu_layout"]) if meta.get("imu_layout") else None
        except (ImuLayoutError, TypeError) as e:
            raise StoreError(f"{meta_path}: field 'imu_layout': {e}") from None
        jn = meta.get("joint_names")
        self.joint_names: tuple[str, ...] | None = tuple(jn) if jn else None
        self._entries: dict[str, dict[str, Any]] = meta["sequences"]
        self._cache: tuple[str, Any] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Sequence]:
        for sid in self.sequence_ids:
            yield self.read(sid)

    @property
    def sequence_ids(self) -> list[str]:
        return list(self._entries)

    def info(self, sequence_id: str) -> dict[str, Any]:
        """meta.json's entry for one sequence (subject, fps, frames, modalities, scene, person)."""
        if sequence_id not in self._entries:
            raise StoreError(f"{self.root}: no sequence {sequence_id!r}")
        return self._entries[sequence_id]

    def _shard(self, name: str):
        if self._cache is None or self._cache[0] != name:
            path = self.root / name
            if not path.is_file():
                raise StoreError(f"{path}: shard listed in meta.json is missing")
            try:
                shard = np.load(path, allow_pickle=False)
            except Exception as e:  # noqa: BLE001 - zipfile and numpy raise many types on a corrupt file
                raise StoreError(f"{path}: cannot read shard ({type(e).__name__}: {str(e)[:200]})") from None
            if not isinstance(shard, np.lib.npyio.NpzFile):
                raise StoreError(f"{path}: cannot read shard (a .npy array, not an .npz archive)")
            if self._cache is not None:
                self._cache[1].close()
            self._cache = (name, shard)
        return self._cache[1]

    def read(self, sequence_id: str, modalities: Iterable[str] | None = None) -> Sequence:
        """Load one sequence (all its modalities, or only those asked) and validate it."""
        e = self.info(sequence_id)
        shard = self._shard(e["shard"])
        k = e["index"]
        where = f"{self.root / e['shard']}"
        here = f"{where}, sequence {sequence_id!r}"
        wanted = set(e["modalities"] if modalities is None else modalities)

        def get(name: str, listed: bool = False) -> np.ndarray | None:
            key = f"{k}/{name}"
            if key not in shard.files:
                if listed:
                    raise _fail(here, f"field {name!r} missing (meta.json lists it)")
                return None
            try:
                return shard[key]
            except Exception as err:  # noqa: BLE001 - zipfile, zlib and numpy's reader raise many types on corrupt data
                raise _fail(here, f"field {name!r} unreadable ({type(err).__name__}: {str(err)[:200]})") from None

        ts, labels = get("timestamps"), get("labels")
        if ts is None or labels is None:
            raise _fail(here, "missing field 'timestamps' or 'labels'")
        if ts.shape != (e["frames"],):
            raise _fail(here, f"field 'timestamps' has shape {ts.shape}, meta.json says {e['frames']} frames")
        points = None
        if "points" in wanted and "points" in e["modalities"]:
            flat, off = get("points"), get("points_offsets")
            if flat is None or off is None:
                raise _fail(here, "field 'points' or 'points_offsets' missing")
            if flat.ndim != 2 or flat.shape[1] != 3:
                raise _fail(here, f"field 'points' has shape {flat.shape}, expected (P, 3)")
            _check_real(flat, here, "points")
            if off.dtype.kind not in "iu":
                raise _fail(here, f"field 'points_offsets' must be integers, got dtype {off.dtype}")
            off = off.astype(np.int64)                 # unsigned offsets: a decrease shows as one
            if off.shape != (len(ts) + 1,) or off[0] != 0 or off[-1] != len(flat) or np.any(np.diff(off) < 0):
                raise _fail(here, f"field 'points_offsets' (shape {off.shape}) does not partition {len(flat)} points "
                                  f"into {len(ts)} frames")
            points = np.split(flat, off[1:-1])
        seq = Sequence(
            sequence_id=sequence_id, subject=e["subject"], fps=e["fps"], timestamps=ts, labels=labels,
            text=get("text", listed=bool(e.get("has_text"))), points=points,
            imu=get("imu", "imu" in e["modalities"]) if "imu" in wanted else None,
            joints=get("joints", "joints" in e["modalities"]) if "joints" in wanted else None,
            scene=e["scene"], person=e["person"], attrs=e["attrs"],
        )
        validate_sequence(seq, num_classes=len(self.class_names), imu_layout=self.imu_layout,
                          joint_names=self.joint_names, where=where)
        return seq

    def split_schemes(self) -> list[str]:
        d = self.root / "splits"
        return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []

    def split_names(self, scheme: str) -> list[str]:
        """The split names of ``scheme`` ([] when the store has no such scheme)."""
        if scheme not in self.split_schemes():
            return []
        splits = _read_json(self.root / "splits" / f"{scheme}.json")
        return sorted(splits) if isinstance(splits, dict) else []

    def split(self, scheme: str, name: str) -> list[str]:
        """Sequence ids of split ``name`` (e.g. "train") in scheme ``scheme`` (e.g. "by_subject")."""
        path = self.root / "splits" / f"{scheme}.json"
        if not (isinstance(scheme, str) and _SPLIT_NAME.match(scheme)) or not path.is_file():
            raise StoreError(f"{self.root}: no split scheme {scheme!r}; available: {self.split_schemes()}")
        splits = _read_json(path)
        if not (isinstance(splits, dict) and all(_names_ok(v) for v in splits.values())):
            raise StoreError(f"{path}: expected a JSON object of split name -> list of sequence ids")
        if name not in splits:
            raise StoreError(f"{path}: no split {name!r}; available: {sorted(splits)}")
        unknown = [s for s in splits[name] if s not in self._entries]
        if unknown:
            raise StoreError(f"{path}: split {name!r} lists unknown sequences {unknown[:5]}")
        return list(splits[name])

    def subjects(self) -> list[str]:
        return sorted({e["subject"] for e in self._entries.values()})
