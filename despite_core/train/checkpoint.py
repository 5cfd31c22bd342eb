"""Checkpoints: plain dicts of tensors and JSON-able values, loaded with ``weights_only=True``
(no pickled code), checked for kind and version; a corrupt or mismatched file is a clear error."""
from __future__ import annotations

import argparse
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "despite-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, corrupt, of another kind or version, or mismatched."""


def make(kind: str, model: torch.nn.Module, model_config, store, epoch: int, args: argparse.Namespace | dict,
         imu_layout=None, **extra: Any) -> dict:
    """``imu_layout``: the layout the model's IMU input follows (default: the store's)."""
    layout = imu_layout if imu_layout is not None else store.imu_layout
    state = {
        "format": FORMAT, "version": VERSION, "kind": kind, "epoch": int(epoch),
        "model_config": model_config.to_dict(), "model": model.state_dict(),
        "class_names": list(store.class_names),
        "imu_layout": layout.to_dict() if layout else None,
        "store": str(store.root), "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "args": args_dict(args),
    }
    for k, v in extra.items():
        state[k] = v.state_dict() if hasattr(v, "state_dict") else v
    return state


def temperature_of(state: dict) -> float:
    """The softmax temperature a checkpoint's embedding space was trained at: a pre-training
    checkpoint's loss state, a checkpoint recovered from a bundle's ``temperature``, else the loss's
    default (0.1)."""
    t = (state.get("source_bundle") or {}).get("temperature")
    if t is None and "loss" in state:
        t = state["loss"]["log_temperature"].exp()
    return float(t if t is not None else 0.1)


def args_dict(args: argparse.Namespace | dict) -> dict:
    """The JSON-able options of a run (paths as strings; callables and other objects dropped)."""
    items = (vars(args) if not isinstance(args, dict) else args).items()
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in items
            if isinstance(v, (str, int, float, bool, type(None), Path))}


def save(state: dict, path: str | os.PathLike) -> None:
    """Atomic write (temporary file, then rename): an interrupted save never leaves a torn file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def imu_layout_of(state: dict):
    """The IMU layout a checkpoint's model expects (None when it has no IMU)."""
    from despite_core.data.imu_layout import ImuLayout
    from despite_core.train.data import model_imu_layout

    if not state.get("imu_layout"):
        return None
    layout = ImuLayout.from_dict(state["imu_layout"])
    want = (state.get("model_config", {}).get("imu") or {}).get("input_dim")
    if want and layout.flat_width != want:
        # Checkpoints of the first release recorded the store's layout; the model's follows from it.
        derived = model_imu_layout(layout)
        if derived is None or derived.flat_width != want:
            raise CheckpointError(f"checkpoint IMU layout has {layout.flat_width} channels, its IMU encoder takes {want}")
        return derived
    return layout


def load(path: str | os.PathLike, expect_kind: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a despite checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported (this reads {VERSION})")
    if expect_kind is not None and state.get("kind") != expect_kind:
        raise CheckpointError(f"{path}: a {state.get('kind')!r} checkpoint, expected {expect_kind!r}")
    return state
