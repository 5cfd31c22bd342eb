"""The `despite` command as the training and export tests run it: one subprocess call, a pair of small
stores of the default bundle's world edition, one short `train har` run scored on the other store."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers.editions import default_edition

BIN = Path(sys.executable).parent


def despite(*args, timeout: float = 600, ok: bool = True) -> subprocess.CompletedProcess:
    """`despite ARGS...`; with ``ok`` its exit status must be 0 (stderr's tail in the failure)."""
    out = subprocess.run([str(BIN / "despite"), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if ok:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def store_pair(d: Path, seeds: tuple[int, int]) -> Path:
    """``d/train`` and ``d/test``: 15 s, 2 people, 16 beams each, of the default bundle's world edition
    (so that its own head applies)."""
    for name, seed in zip(("train", "test"), seeds):
        despite("synth", "--out", d / name, "--minutes", "0.25", "--people", "2", "--seed", seed,
                "--lidar-beams", "16", "--edition", default_edition(), "--quiet")
    return d


def train_har(stores: Path, out: Path, *extra) -> dict:
    """One epoch of `despite train har` on every window of the train store, scored on the whole test
    store; its metrics.json."""
    despite("train", "har", *extra, "--store", stores / "train", "--test-store", stores / "test", "--test-split", "all",
            "--train-split", "all", "--out", out, "--epochs", "1", "--batch-size", "8", "--stride", "12",
            "--eval-stride", "4", "--quiet")
    return json.loads((out / "metrics.json").read_text())
