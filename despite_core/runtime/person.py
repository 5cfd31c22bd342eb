"""Is this cluster a person? Shape features of one cluster and a small learned classifier over them.

Detection must not depend on motion (a patient lying still, a worker at a station), so perception
decides person / not person from the shape of each cluster alone: a cabinet, a pillar or a wall
piece of a person's height is told apart by its planar faces, flat top and constant width, where a
person is rounded, narrower at the head than at the shoulders, and sparse between the legs.

:func:`cluster_features` computes the features in the floor's frame (level coordinates, heights
above the floor); :class:`PersonClassifier` is a two-layer perceptron over them, trained on the
synthetic world's clusters labelled by ``gt_person`` (``despite train person``,
:mod:`despite_core.train.person`) and shipped as ``models/perception/person_classifier.npz``
(numpy only; a handful of clusters per scan needs no ONNX session).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from despite_core.install import SOURCE_ROOT, installed

# Height slices, as fractions of the cluster's top height above the floor.
SLICES = (0.0, 0.3, 0.55, 0.75, 0.88, 1.0001)
FEATURES = (
    "log_points", "range", "top", "bottom", "extent", "major_std", "minor_std", "major_span",
    "minor_span", "top_flat", "density", "cut_off",
    *(f"width_{k}" for k in range(len(SLICES) - 1)),
    *(f"share_{k}" for k in range(len(SLICES) - 1)),
    *(f"depth_{k}" for k in range(len(SLICES) - 1)),
)


def cluster_features(level: np.ndarray, height: np.ndarray, range_m: float, cut_off: bool = False) -> np.ndarray:
    """(F,) float32 features of one cluster: ``level`` (n, 2) coordinates along the floor, ``height``
    (n,) above the floor, both metres; ``range_m`` the horizontal distance of its centre; ``cut_off``
    whether the field of view's lowest beam cuts it (only its top part can be seen)."""
    n = len(height)
    xy = level.astype(np.float64) - level.mean(0)
    cov = xy.T @ xy / max(n, 1)
    evals, evecs = np.linalg.eigh(cov)                                     # ascending
    major = xy @ evecs[:, 1]
    minor = xy @ evecs[:, 0]
    top, bottom = float(height.max()), float(height.min())
    def span(v: np.ndarray) -> float:
        """5th to 95th percentile range (nearest rank: np.percentile is ~10x slower on small arrays)."""
        if len(v) < 3:
            return 0.0
        v = np.sort(v)
        return float(v[int(0.95 * (len(v) - 1) + 0.5)] - v[int(0.05 * (len(v) - 1) + 0.5)])

    rel = height / max(top, 1e-3)
    widths, shares, depths = [], [], []
    for lo, hi in zip(SLICES[:-1], SLICES[1:]):
        m = (rel >= lo) & (rel < hi)
        shares.append(m.mean() if n else 0.0)
        widths.append(span(major[m]))
        depths.append(span(minor[m]))
    top_flat = float((height > top - 0.04).mean())
    area = max(span(major) * max(top - bottom, 0.05), 0.01)
    f = [np.log(n), range_m / 15.0, top, bottom, top - bottom, np.sqrt(max(evals[1], 0)), np.sqrt(max(evals[0], 0)),
         span(major), span(minor), top_flat, np.log(n * (range_m + 1.0) ** 2 / area), float(cut_off),
         *widths, *shares, *depths]
    return np.asarray(f, np.float32)


def default_classifier_path() -> Path:
    """share/despite_ros/models/perception/person_classifier.npz of the install, else the source tree's."""
    rel = "models/perception/person_classifier.npz"
    found = installed(f"share/despite_ros/{rel}")
    return found if found is not None else SOURCE_ROOT / rel


class PersonClassifier:
    """Probability that a cluster is a person, from :func:`cluster_features`.

    The file (npz, no pickles): ``mean``/``std`` (F,) feature standardisation, ``w1`` (F, H), ``b1``
    (H,), ``w2`` (H,), ``b2`` (), and ``meta`` (JSON: feature names, training data, metrics)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_classifier_path()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: person classifier not found (train one with `despite train person`)")
        with np.load(self.path, allow_pickle=False) as z:
            try:
                self.mean, self.std = z["mean"].astype(np.float32), z["std"].astype(np.float32)
                self.w1, self.b1 = z["w1"].astype(np.float32), z["b1"].astype(np.float32)
                self.w2, self.b2 = z["w2"].astype(np.float32), np.float32(z["b2"])
                self.meta = json.loads(str(z["meta"]))
            except KeyError as e:
                raise ValueError(f"{self.path}: not a person classifier (missing {e})") from None
        names = tuple(self.meta.get("features", ()))
        if names != FEATURES or self.w1.shape != (len(FEATURES), len(self.b1)) or self.w2.shape != self.b1.shape:
            raise ValueError(f"{self.path}: made for features {list(names)}, this code computes {list(FEATURES)}; "
                             "retrain it with `despite train person`")
        self.threshold = float(self.meta.get("threshold", 0.5))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(K, F) -> (K,) person probability."""
        x = (np.asarray(features, np.float32).reshape(-1, len(FEATURES)) - self.mean) / self.std
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        z = np.clip(h @ self.w2 + self.b2, -30, 30)
        return 1.0 / (1.0 + np.exp(-z))
