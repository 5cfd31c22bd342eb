"""The sequence store: the one on-disk format every importer writes and every trainer reads.

Specified in docs/data-format.md (keep the two in step). A store is a directory:

    meta.json            format, class names, IMU layout, joint names, sequences and their shards
    shard-00000.npz ...  whole sequences, arrays keyed "<k>/<field>" (k = position in the shard)
    splits/<scheme>.json optional named splits: {"train": [sequence ids], "test": [...], ...}

numpy + json only: no pickle anywhere (``allow_pickle=False``), so a store is safe to open.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
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
    if not (np.isfinite(seq.fps) and seq.fps > 0):
        raise _fail(where, f"field 'fps' must be a positive number, got {seq.fps!r}")
    ts = np.asarray(seq.timestamps)
    if ts.ndim != 1 or ts.size == 0:
        raise _fail(where, f"field 'timestamps' must have shape (T,) with T >= 1, got {ts.shape}")
    _check_finite(ts, where, "timestamps")
    bad = np.nonzero(np.diff(ts) <= 0)[0]
    if bad.size:
        i = int(bad[0])
        raise _fail(where, f"field 'timestamps' is not strictly increasing at frame {i + 1} "
                           f"({ts[i]:.6f} s then {ts[i + 1]:.6f} s)")
    t = ts.size
    labels = np.asarray(seq.labels)
    if labels.shape != (t,):
        raise _fail(where, f"field 'labels' has shape {labels.shape}, expected ({t},) like 'timestamps'")
    if not np.issubdtype(labels.dtype, np.integer):
        raise _fail(where, f"field 'labels' must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < -1 or labels.max() >= num_classes):
        raise _fail(where, f"field 'labels' holds values in [{labels.min()}, {labels.max()}]; "
                           f"allowed: -1 (unlabelled) or 0..{num_classes - 1}")
    if seq.text is not None:
        text = np.asarray(seq.text)
        if text.shape != (t,) or text.dtype.kind != "U":
            raise _fail(where, f"field 'text' must be ({t},) strings, got shape {text.shape} dtype {text.dtype}")
    if not seq.modalities:
        raise _fail(where, "holds no modality (points, imu or joints)")
    if seq.points is not None:
        if len(seq.points) != t:
            raise _fail(where, f"field 'points' has {len(seq.points)} frames, 'timestamps' has {t}")
        for i, p in enumerate(seq.points):
            p = np.asarray(p)
            if p.ndim != 2 or p.shape[1] != 3:
                raise _fail(where, f"field 'points' frame {i} has shape {p.shape}, expected (N, 3)")
            _check_finite(p, where, f"points[{i}]")
    if seq.imu is not None:
        if imu_layout is None:
            raise _fail(where, "field 'imu' present but the store declares no IMU layout")
        imu = np.asarray(seq.imu)
        want = (t, len(imu_layout.sites), imu_layout.width)
        if imu.shape != want:
            raise _fail(where, f"field 'imu' has shape {imu.shape}, expected {want} "
                               f"(T, sites {list(imu_layout.sites)}, channels {list(imu_layout.channels)})")
        _check_finite(imu, where, "imu")
    if seq.joints is not None:
        if joint_names is None:
            raise _fail(where, "field 'joints' present but the store declares no joint names")
        j = np.asarray(seq.joints)
        if j.shape != (t, len(joint_names), 3):
            raise _fail(where, f"field 'joints' has shape {j.shape}, expected ({t}, {len(joint_names)}, 3)")
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
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{meta_path}: invalid JSON ({e})") from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"{meta_path}: 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{meta_path}: format_version {meta.get('format_version')!r} is not supported "
                             f"(this version reads {FORMAT_VERSION})")
        for key in ("class_names", "shards", "sequences"):
            if key not in meta:
                raise StoreError(f"{meta_path}: missing key {key!r}")
        self.meta = meta
        self.class_names: tuple[str, ...] = tuple(meta["class_names"])
        try:
            self.imu_layout = ImuLayout.from_dict(meta["imu_layout"]) if meta.get("imu_layout") else None
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
                self._cache = (name, np.load(path, allow_pickle=False))
            except (OSError, ValueError) as e:
                raise StoreError(f"{path}: cannot read shard ({e})") from None
        return self._cache[1]

    def read(self, sequence_id: str, modalities: Iterable[str] | None = None) -> Sequence:
        """Load one sequence (all its modalities, or only those asked) and validate it."""
        e = self.info(sequence_id)
        shard = self._shard(e["shard"])
        k = e["index"]
        where = f"{self.root / e['shard']}"
        wanted = set(e["modalities"] if modalities is None else modalities)

        def get(name: str) -> np.ndarray | None:
            key = f"{k}/{name}"
            if key not in shard.files:
                return None
            try:
                return shard[key]
            except (OSError, ValueError) as err:
                raise _fail(f"{where}, sequence {sequence_id!r}", f"field {name!r} unreadable ({err})") from None

        ts, labels = get("timestamps"), get("labels")
        if ts is None or labels is None:
            raise _fail(f"{where}, sequence {sequence_id!r}", "missing field 'timestamps' or 'labels'")
        points = None
        if "points" in wanted and "points" in e["modalities"]:
            flat, off = get("points"), get("points_offsets")
            if flat is None or off is None:
                raise _fail(f"{where}, sequence {sequence_id!r}", "field 'points' or 'points_offsets' missing")
            if off.shape != (len(ts) + 1,) or off[0] != 0 or off[-1] != len(flat) or np.any(np.diff(off) < 0):
                raise _fail(f"{where}, sequence {sequence_id!r}",
                            f"field 'points_offsets' (shape {off.shape}) does not partition {len(flat)} points "
                            f"into {len(ts)} frames")
            points = np.split(flat, off[1:-1])
        seq = Sequence(
            sequence_id=sequence_id, subject=e["subject"], fps=e["fps"], timestamps=ts, labels=labels,
            text=get("text"), points=points,
            imu=get("imu") if "imu" in wanted else None,
            joints=get("joints") if "joints" in wanted else None,
            scene=e.get("scene", ""), person=e.get("person", 0), attrs=e.get("attrs", {}),
        )
        validate_sequence(seq, num_classes=len(self.class_names), imu_layout=self.imu_layout,
                          joint_names=self.joint_names, where=where)
        return seq

    def split_schemes(self) -> list[str]:
        d = self.root / "splits"
        return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []

    def split(self, scheme: str, name: str) -> list[str]:
        """Sequence ids of split ``name`` (e.g. "train") in scheme ``scheme`` (e.g. "by_subject")."""
        path = self.root / "splits" / f"{scheme}.json"
        if not path.is_file():
            raise StoreError(f"{self.root}: no split scheme {scheme!r}; available: {self.split_schemes()}")
        splits = json.loads(path.read_text())
        if name not in splits:
            raise StoreError(f"{path}: no split {name!r}; available: {sorted(splits)}")
        unknown = [s for s in splits[name] if s not in self._entries]
        if unknown:
            raise StoreError(f"{path}: split {name!r} lists unknown sequences {unknown[:5]}")
        return list(splits[name])

    def subjects(self) -> list[str]:
        return sorted({e["subject"] for e in self._entries.values()})
