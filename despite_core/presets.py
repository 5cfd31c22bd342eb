"""Modality-subset presets, named as in the paper: "De" + the letters of the modalities in
S (skeleton), P (point cloud), I (IMU), T (text) order + "E". Every subset of at least two
modalities is a preset (11 of them); the loss pairs follow from the subset."""
from __future__ import annotations

import itertools

LETTERS = {"S": "skeleton", "P": "pointcloud", "I": "imu", "T": "text"}
ORDER = "SPIT"


def _name(letters: str) -> str:
    return "De" + letters + "E"


PRESETS: dict[str, tuple[str, ...]] = {
    _name("".join(c)): tuple(LETTERS[x] for x in c)
    for k in (4, 3, 2) for c in itertools.combinations(ORDER, k)
}


def preset_modalities(name: str) -> tuple[str, ...]:
    """Modalities of a preset, e.g. ``DeSPIE`` -> (skeleton, pointcloud, imu). Case-sensitive as in the paper."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def loss_pairs(name: str) -> list[str]:
    """The loss terms a preset trains: sensor<->text (masked) and every sensor pair."""
    mods = preset_modalities(name)
    sensors = [m for m in mods if m != "text"]
    pairs = [f"{m}-text" for m in sensors] if "text" in mods else []
    pairs += [f"{a}-{b}" for a, b in itertools.combinations(sensors, 2)]
    return pairs
