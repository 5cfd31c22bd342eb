"""``despite import bvh FILES... --out STORE [--labels CSV]``: BVH motion capture as a joints-only
store (SMPL joint order, metres, z up), labels from a CSV of segments.

The file format is :mod:`.bvh_format`; the rig mapping and the conversion to SMPL kinematics are
:mod:`.bvh_rig` (also used by the synthetic world to drive its sensors with real mocap).
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from despite_core.data.importers.bvh_format import as_float, load_bvh
from despite_core.data.importers.bvh_rig import UP_AXIS_TO_Z_UP, bvh_to_kinematics, map_joints, resolve_unit_scale
from despite_core.data.importers.common import (
    ImporterError, WarningLog, add_output_arguments, progress, segments_to_frames, store_summary,
    wrap_store_error,
)
from despite_core.data.store import SMPL_JOINT_NAMES, Sequence, StoreError, StoreWriter


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
        start = as_float(row["start_s"], where, "start_s")
        end = as_float(row["end_s"], where, "end_s")
        if not end > start:
            raise ImporterError(f"{where}: end_s {end} is not after start_s {start}")
        if not row["label"] or not row["file"]:
            raise ImporterError(f"{where}: empty file or label")
        out.append(LabelSegment(row["file"], start, end, row["label"]))
    return out


def segments_for(path: Path, segments: list[LabelSegment]) -> list[LabelSegment]:
    """The rows of ``segments`` that name ``path`` (by path, file name or stem)."""
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
            segs = segments_for(path, segments)
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
