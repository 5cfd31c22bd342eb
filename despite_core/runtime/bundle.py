"""The model bundle's fixed facts, shared by the exporter (torch) and the runtime (no torch):
format version, required model.yaml keys, the fixed ONNX tensor names, and file hashing."""
from __future__ import annotations

import hashlib
from pathlib import Path

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_id", "preset", "class_names", "fps", "window", "points_per_frame",
                 "normalisation", "imu_layout", "embedding_dim", "temperature", "parts", "provenance", "metrics")
INPUT_NAMES = {"pointcloud": "points", "imu": "imu", "skeleton": "joints"}


def hash_file(h, path: str | Path):
    """Feed a file to the hash object ``h`` in 1 MiB chunks; returns ``h``."""
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    return hash_file(hashlib.sha256(), path).hexdigest()
