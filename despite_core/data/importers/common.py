"""Pieces every importer shares: the error and warning types, the --out/--overwrite flags, label
segments on a time grid, progress bars and the JSON summary (numpy only, no torch).

Importers convert a public dataset into the sequence store (``despite_core.data.store``). They
declare the source's own conventions (IMU layout, units, frames) rather than guessing
conversions, and they say what they assumed: every assumption that could be wrong is both
documented in docs/importers.md and reported as an :class:`ImporterWarning` at run time.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence as Seq

import numpy as np
from tqdm import tqdm

from despite_core.data.store import Store, StoreError


class ImporterError(ValueError):
    """A source file is missing or malformed. The message names the file, and where it applies the
    sequence, frame and field at fault."""


class ImporterWarning(UserWarning):
    """Something in a source was assumed, skipped or repaired; the importer carried on."""


class WarningLog:
    """Issues :class:`ImporterWarning` s and keeps their text for the run's JSON summary.

    ``limit`` caps how many warnings of one ``kind`` are issued individually; the rest are counted
    and reported once at :meth:`finish` (a dataset with 500 short sequences should not print 500
    identical lines).
    """

    def __init__(self, limit: int = 10) -> None:
        self.messages: list[str] = []
        self.limit = limit
        self._counts: dict[str, int] = {}

    def warn(self, message: str, kind: str = "") -> None:
        kind = kind or message
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        if n <= self.limit:
            self.messages.append(message)
            warnings.warn(message, ImporterWarning, stacklevel=2)

    def finish(self) -> list[str]:
        """Report suppressed warnings (once per kind) and return every message issued."""
        for kind, n in self._counts.items():
            if n > self.limit:
                msg = f"{n - self.limit} more warning(s) like: {kind}"
                self.messages.append(msg)
                warnings.warn(msg, ImporterWarning, stacklevel=2)
        self._counts = {k: min(v, self.limit) for k, v in self._counts.items()}
        return list(self.messages)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out DIR`` (the store to write) and ``--overwrite``, identical for every importer."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="sequence store directory to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a store that already exists at --out")


def progress(items: Iterable, desc: str, total: int | None = None, unit: str = "it"):
    """A tqdm bar on stderr; silent when stderr is not a terminal (logs and tests stay clean)."""
    return tqdm(items, desc=desc, total=total, unit=unit, disable=None, leave=False)


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Stamps (T,) float64 s of frames sampled at ``fps`` from t = 0: ``i / fps`` exactly."""
    return np.arange(num_frames, dtype=np.float64) / float(fps)


def segments_to_frames(times: np.ndarray, segments: Seq[tuple[float, float, Any]],
                       empty: Any = None) -> list[Any]:
    """The payload of the segment containing each stamp, ``empty`` where none does.

    ``segments``: (start_s, end_s, payload), half-open [start, end) so that back-to-back segments
    (0-1 s then 1-2 s) give each frame exactly one label. Where segments overlap the shortest one
    wins: it is the more specific annotation (BABEL marks "walk" over a whole stretch and
    "turn" for a moment inside it). A tolerance of 1 us absorbs float noise in the bounds.
    """
    eps = 1e-6
    out: list[Any] = [empty] * len(times)
    best = np.full(len(times), np.inf)
    for start, end, payload in segments:
        dur = float(end) - float(start)
        inside = (times >= float(start) - eps) & (times < float(end) - eps) & (dur < best)
        for i in np.nonzero(inside)[0]:
            out[int(i)] = payload
        best[inside] = dur
    return out


def wrap_store_error(source: str | Path, err: StoreError) -> ImporterError:
    """A store validation failure restated with the source file it came from."""
    return ImporterError(f"{source}: the imported sequence is invalid: {err}")


def store_summary(out: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-able summary every ``run`` returns: counts read back from the closed store."""
    store = Store(out)
    frames = sum(int(store.info(s)["frames"]) for s in store.sequence_ids)
    splits: dict[str, dict[str, int]] = {}
    for scheme in store.split_schemes():
        data = json.loads((Path(out) / "splits" / f"{scheme}.json").read_text())
        splits[scheme] = {k: len(v) for k, v in data.items()}
    summary: dict[str, Any] = {
        "out": str(out), "sequences": len(store), "frames": frames,
        "classes": list(store.class_names), "subjects": len(store.subjects()), "splits": splits,
        "imu_layout": store.imu_layout.to_dict() if store.imu_layout else None,
        "joint_names": list(store.joint_names) if store.joint_names else None,
    }
    if extra:
        summary.update(extra)
    return summary
