"""`despite train person`: the person / not-person cluster classifier of the live perception.

Training data come from the synthetic world (never from the scenes perception is evaluated on):
scenes over a mix of LiDARs (16-128 beams), mountings, 1-8 people, 0-4 free-standing
person-sized objects (cabinets, coat stands: the look-alikes) and, in every third scene, people
8-15 m away (far, sparse people: a dozen returns on a 16-beam LiDAR); every cluster that passes
perception's loose size gates (background model off, so every piece of furniture and wall shows
up; not the clusters under ``min_points`` that only continue a track, which are never classified)
is labelled by its ``gt_person`` points: a person when one person holds at least half of its
points, not a person when people hold under a fifth of them, skipped in between. The model is a
two-layer perceptron on :func:`despite_core.runtime.person.cluster_features`, trained with numpy
(Adam, class-balanced logistic loss). The decision threshold is ``--threshold`` (0.5: the
class-balanced decision; tracking lets a cluster above half of it continue a track, so a person
half hidden for a scan keeps their track); validation recall and false-positive rate at it are
recorded. A cluster that passes as a person during background learning is kept out of the
background for good, so false positives cost more than a missed scan: do not lower it lightly.
Output: an npz that :class:`PersonClassifier` loads. ``--data`` caches the collected clusters.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from despite_core.runtime.person import FEATURES, PersonClassifier

BEAMS = (16, 32, 64, 128)
PEOPLE = (1, 2, 4, 8)
FAR = (8.0, 15.0)          # every third scene: people this far (m), so sparse people are in the data


def scene_configs(seeds: range, seconds: float):
    """One WorldConfig per seed, cycling through LiDARs, crowd sizes and far people (deterministic)."""
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.world import WorldConfig

    for k, seed in enumerate(seeds):
        beams = BEAMS[k % len(BEAMS)]
        people = PEOPLE[(k // len(BEAMS)) % len(PEOPLE)]
        yield seed, WorldConfig(minutes=seconds / 60, scene_minutes=seconds / 60, people=people, seed=seed,
                                lidar=LidarConfig(beams=beams, columns=2048 if beams == 128 else 1024),
                                tall_objects=k % 5, distance=FAR if k % 3 == 2 else None)


class _AcceptAll:
    """Stands in for the classifier while collecting: every gated cluster is scored 1."""

    threshold = 0.5

    def __call__(self, features):
        return np.ones(len(features), np.float32)


def collect(seeds: range, seconds: float = 12.0, every: int = 3,
            progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """(features (S, F), labels (S,) 1 = person, 0 = not) from the scans of the seeds' scenes."""
    from tqdm import tqdm

    from despite_core.data.synth.bag import scan_arrays
    from despite_core.data.synth.world import build_scene, iter_timeline
    from despite_core.runtime.perception import Perception, PerceptionConfig
    from despite_core.runtime.person import cluster_features

    feats, labels = [], []
    stats = {"scans": 0, "skipped_mixed": 0}

    class Recorder(Perception):
        truth: np.ndarray

        def _score(self, level, height, cut, clusters, scan_idx=None):
            for m in clusters:
                if len(m) < self.cfg.min_points:          # a small cluster beside a track: never classified
                    continue
                gt = self.truth[scan_idx[m]]
                share = np.bincount(gt).astype(np.float64) / len(gt)
                top = share[1:].max() if len(share) > 1 else 0.0
                if top >= 0.5:
                    y = 1
                elif share[1:].sum() < 0.2:
                    y = 0
                else:
                    stats["skipped_mixed"] += 1
                    continue
                feats.append(cluster_features(level[m], height[m], float(np.linalg.norm(level[m].mean(0))),
                                              bool(cut[m].any())))
                labels.append(y)
            return np.ones(len(clusters), np.float32)

    configs = list(scene_configs(seeds, seconds))
    bar = tqdm(configs, desc="person classifier data", unit="scene", disable=not progress)
    for _, cfg in bar:
        scene = build_scene(cfg, 0, seconds)
        per = Recorder(PerceptionConfig(background=False), classifier=_AcceptAll())
        n = 0
        for t, kind, scan in iter_timeline(scene, full=True):
            if kind != "scan":
                continue
            n += 1
            if n % every:
                continue
            a = scan_arrays(scan)
            per.truth = a["gt_person"].astype(np.int64)
            per.process(np.stack([a["x"], a["y"], a["z"]], 1), t)
            stats["scans"] += 1
    bar.close()
    return np.asarray(feats, np.float32).reshape(-1, len(FEATURES)), np.asarray(labels, np.int64), stats


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 32, steps: int = 3000, lr: float = 3e-3,
              weight_decay: float = 1e-4, seed: int = 0) -> dict[str, np.ndarray]:
    """Two-layer perceptron, full-batch Adam on the class-balanced logistic loss."""
    rng = np.random.default_rng(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    params = {"w1": rng.normal(0, np.sqrt(2 / x.shape[1]), (x.shape[1], hidden)), "b1": np.zeros(hidden),
              "w2": rng.normal(0, np.sqrt(1 / hidden), hidden), "b2": np.zeros(())}
    pos = max(y.mean(), 1e-3)
    wts = np.where(y == 1, 0.5 / pos, 0.5 / max(1 - pos, 1e-3)) / len(y)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(val) for k, val in params.items()}
    for step in range(1, steps + 1):
        h_pre = xs @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0)
        z = h @ params["w2"] + params["b2"]
        p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
        dz = wts * (p - y)                                                  # d loss / d z
        dh = np.outer(dz, params["w2"]) * (h_pre > 0)
        grads = {"w2": h.T @ dz + weight_decay * params["w2"], "b2": dz.sum(),
                 "w1": xs.T @ dh + weight_decay * params["w1"], "b1": dh.sum(0)}
        for k in params:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            params[k] = params[k] - lr * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
    return {"mean": mean, "std": std, **params}


def _metrics(p: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    pred = p >= threshold
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    return {"recall": round(tp / max(tp + fn, 1), 4), "false_positive_rate": round(fp / max(fp + tn, 1), 4),
            "precision": round(tp / max(tp + fp, 1), 4), "positives": tp + fn, "negatives": fp + tn}


def _save(path: Path, model: dict, meta: dict) -> None:
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in model.items()}, meta=json.dumps(meta))


def run(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    train_seeds = range(args.seed, args.seed + args.scenes)
    val_seeds = range(args.seed + args.scenes, args.seed + args.scenes + args.val_scenes)
    cached = args.data is not None and args.data.is_file()
    if cached:
        with np.load(args.data, allow_pickle=False) as z:
            x, y, xv, yv = z["x"], z["y"], z["xv"], z["yv"]
            st, stv = json.loads(str(z["stats"]))
    else:
        x, y, st = collect(train_seeds, args.seconds, progress=not args.quiet)
        xv, yv, stv = collect(val_seeds, args.seconds, progress=not args.quiet)
        if args.data is not None:
            np.savez(args.data, x=x, y=y, xv=xv, yv=yv, stats=json.dumps([st, stv]))
    if (y == 1).sum() < 10 or (y == 0).sum() < 10 or (yv == 1).sum() < 1:
        raise ValueError(f"too few clusters to train on ({int((y == 1).sum())} people, {int((y == 0).sum())} others, "
                         f"{int((yv == 1).sum())} validation people); use more --scenes or longer --seconds")
    model = train_mlp(x, y, hidden=args.hidden, steps=args.steps, weight_decay=args.weight_decay)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.stem + ".tmp.npz")
    _save(tmp, model, {"features": list(FEATURES), "threshold": 0.5})
    clf = PersonClassifier(tmp)
    tmp.unlink()
    pv = clf(xv)
    threshold = float(args.threshold)
    meta = {"features": list(FEATURES), "threshold": round(threshold, 4),
            "train": {"seeds": [train_seeds.start, train_seeds.stop - 1], "seconds": args.seconds,
                      "clusters": int(len(y)), "people": int(y.sum()), **st, **_metrics(clf(x), y, threshold)},
            "validation": {"seeds": [val_seeds.start, val_seeds.stop - 1], **stv, **_metrics(pv, yv, threshold)},
            "validation_at_half_threshold": _metrics(pv, yv, threshold / 2),
            "command": f"despite train person --out {args.out} --seed {args.seed} --scenes {args.scenes} "
                       f"--val-scenes {args.val_scenes} --seconds {args.seconds} --threshold {args.threshold} "
                       f"--hidden {args.hidden} --steps {args.steps} --weight-decay {args.weight_decay}",
            "seconds": round(time.perf_counter() - t0, 1), "clusters_from_cache": cached}
    _save(args.out, model, meta)
    return {"out": str(args.out), **meta}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, metavar="NPZ", help="classifier file to write")
    p.add_argument("--seed", type=int, default=1000, help="first training scene seed (evaluation scenes use others)")
    p.add_argument("--scenes", type=int, default=96, help="training scenes (cycling 16/32/64/128 beams, 1/2/4/8 people, far people in every third)")
    p.add_argument("--val-scenes", type=int, default=16, help="validation scenes (the seeds after the training ones)")
    p.add_argument("--seconds", type=float, default=12.0, help="seconds per scene (every 3rd scan is used)")
    p.add_argument("--hidden", type=int, default=16, help="hidden units (the shipped classifier: 16)")
    p.add_argument("--steps", type=int, default=2000, help="Adam steps (full batch)")
    p.add_argument("--weight-decay", type=float, default=1e-3, help="L2 penalty on the weights")
    p.add_argument("--threshold", type=float, default=0.5, help="person probability that starts a track (half of it continues one)")
    p.add_argument("--data", type=Path, default=None, metavar="NPZ",
                   help="cache of the collected clusters: read when it exists, else written (same seeds and seconds!)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
