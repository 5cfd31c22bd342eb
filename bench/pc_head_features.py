"""What the point-cloud head is missing: the shipped encoder's frozen features alone, the body's own
motion (the per-frame centroid track that the per-frame centring hides: its height change and
horizontal travel, plus the cloud's height and width), and both together, each through the same
small MLP (despite_core.evaluate.waterfall.FeatureClassifier), trained on the training split of the
default model's store and scored on its held-out subjects.

Usage: .venv/bin/python bench/pc_head_features.py [--store runs/synth20] [--model models/default] [--seeds 0,1]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from despite_core.data.store import Store
from despite_core.data.windows import WINDOW
from despite_core.evaluate.waterfall import FeatureClassifier
from despite_core.runtime.inference import Runtime
from despite_core.train.data import WindowDataset, collate, split_ids


def motion_features(ds: WindowDataset) -> np.ndarray:
    """(N, 4 x 24): per frame of each window, the centroid's height change and horizontal distance from
    the window's first frame, and the raw cloud's height and horizontal extent (an empty frame: the
    previous frame's values)."""
    out = []
    for k, s in ds.windows:
        g = ds.sequences[k]
        c = g.centroids[s:s + WINDOW].astype(np.float64)
        st = g.raw_stats[s:s + WINDOW].astype(np.float64)
        for i in range(1, WINDOW):                       # carry the last seen frame over occluded ones
            if not np.isfinite(c[i]).all():
                c[i], st[i] = c[i - 1], st[i - 1]
        for i in range(WINDOW - 2, -1, -1):
            if not np.isfinite(c[i]).all():
                c[i], st[i] = c[i + 1], st[i + 1]
        c = np.nan_to_num(c)
        out.append(np.concatenate([c[:, 2] - c[0, 2], np.hypot(*(c[:, :2] - c[0, :2]).T), st[:, 0], st[:, 1]]))
    return np.asarray(out, np.float32)


def encoder_features(rt: Runtime, ds: WindowDataset) -> np.ndarray:
    feats = []
    for i in range(0, len(ds), 64):
        batch = collate([ds[j] for j in range(i, min(i + 64, len(ds)))])
        feats.append(rt.encode("pointcloud", batch["pointcloud"].numpy())[0])
    return np.concatenate(feats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=Path("runs/synth20"))
    ap.add_argument("--model", type=Path, default=Path("models/default"))
    ap.add_argument("--seeds", default="0,1", help="classifier seeds")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rt = Runtime(args.model, threads=2)
    store = Store(args.store)
    sets = {}
    for split, stride in (("train", 3), ("test", 2)):
        ds = WindowDataset(store, split_ids(store, "by_subject", split), ("pointcloud",), stride=stride,
                           cache_dir=store.root / ".cache")
        sets[split] = (encoder_features(rt, ds), motion_features(ds), ds.labels)
    res = {}
    for name, pick in (("encoder features", lambda e, m: e), ("body motion", lambda e, m: m),
                       ("encoder features + body motion", lambda e, m: np.concatenate([e, m], 1))):
        accs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            e, m, y = sets["train"]
            clf = FeatureClassifier(len(store.class_names), seed=seed).fit(pick(e, m), y)
            e, m, y = sets["test"]
            keep = y >= 0
            accs.append(float((clf.predict(pick(e, m))[keep] == y[keep]).mean()))
        res[name] = accs
    print(f"point-cloud HAR on held-out subjects of {args.store} ({int((sets['test'][2] >= 0).sum())} windows), "
          f"MLP on frozen {rt.bundle.meta['model_id']} features; {time.perf_counter() - t0:.0f} s\n")
    print("| input to the MLP | test accuracy (per classifier seed) |\n|---|---|")
    for name, accs in res.items():
        print(f"| {name} | {np.mean(accs):.3f} ({', '.join(f'{a:.3f}' for a in accs)}) |")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
