"""`despite eval waterfall`: where activity accuracy is lost, stage by stage, on the same held-out windows.

For every held-out simulated scene (new seeds: new rooms, people and mountings), the same windows
(24 frames, stride 3, unambiguous labels) are labelled by:

1. **joints**: a small MLP on hand-made features of the ground-truth SMPL joints (pose relative to
   the pelvis in the body's own heading, its spread and speed, pelvis and head height above the
   lowest joint, trunk tilt, displacement, turning), trained on the training store's windows: how
   separable the labels are at all, from perfect body pose;
2. **IMU**: the bundle's IMU encoder and head on the scene's simulated IMUs (what a wearer gives);
3. **point clouds, ground-truth segmentation**: the bundle's point-cloud encoder and head on each
   person's own returns in the full scans (what a perfect perception gives);
4. **live**: the live pipeline (perception, tracking, the same encoder and head) on the full scans;
   a window counts as right when a live window ending at the same scan, on a track of that person,
   has the true label (``scoring.live_vs_truth``'s recall), so a person the perception misses costs
   the window.

Reported overall, per scene (the spread), per class and per distance band (horizontal distance of the
pelvis from the LiDAR at the window's newest frame). Each scene is simulated twice, identically: into
a store (joints and IMU for stages 1-2) and as full scans (stages 3-4 on the same scans); the windows
are those both score, checked to carry the same labels. Deterministic for the seeds.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from despite_core.data.store import SMPL_JOINT_NAMES
from despite_core.runtime.scoring import DISTANCE_BANDS

STAGES = ("joints", "imu", "pointcloud_gt", "live")
STAGE_TITLES = {"joints": "joints (features MLP)", "imu": "IMU (bundle head)",
                "pointcloud_gt": "point clouds, GT segmentation", "live": "live (perception + tracking)"}
FPS = 10.0
WINDOW = 24
_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


def joint_features(joints: np.ndarray) -> np.ndarray:
    """Hand-made features (B, F) of joint windows (B, T, 24, 3) in a z-up frame.

    Heading-invariant: each window is turned so that its mean hip line is the y axis.
    """
    j = np.asarray(joints, np.float64)
    pelvis = j[:, :, _J["pelvis"]]                                           # (B, T, 3)
    rel = j - pelvis[:, :, None]
    hips = j[:, :, _J["left_hip"], :2] - j[:, :, _J["right_hip"], :2]
    ang = np.arctan2(hips[..., 1], hips[..., 0])                               # hip line heading + 90 deg
    mean_ang = np.arctan2(np.sin(ang).mean(1), np.cos(ang).mean(1))            # (B,)
    c, s = np.cos(-mean_ang + np.pi / 2), np.sin(-mean_ang + np.pi / 2)
    x, y = rel[..., 0], rel[..., 1]
    body = np.stack([c[:, None, None] * x - s[:, None, None] * y, s[:, None, None] * x + c[:, None, None] * y,
                     rel[..., 2]], -1)                                          # (B, T, 24, 3)
    speed = np.abs(np.diff(body, axis=1)).mean(1) * FPS                         # (B, 24, 3)
    low = j[..., 2].min(2)                                                      # lowest joint per frame
    ph = pelvis[..., 2] - low
    hh = j[:, :, _J["head"], 2] - low
    trunk = j[:, :, _J["neck"]] - pelvis
    tilt = np.arccos(np.clip(trunk[..., 2] / np.linalg.norm(trunk, axis=-1).clip(min=1e-6), -1, 1))
    turn = np.diff(np.unwrap(ang, axis=1), axis=1)
    step = np.linalg.norm(np.diff(pelvis[..., :2], axis=1), axis=-1)
    extent_z = j[..., 2].max(2) - low
    extent_xy = np.linalg.norm(np.ptp(body[..., :2], axis=2), axis=-1)
    scalars = np.stack([
        ph.mean(1), ph.std(1), ph.min(1), ph.max(1), hh.mean(1), hh.std(1), hh.min(1), hh.max(1),
        tilt.mean(1), tilt.min(1), tilt.max(1),
        np.linalg.norm(pelvis[:, -1, :2] - pelvis[:, 0, :2], axis=-1), step.sum(1), np.ptp(pelvis[..., 2], axis=1),
        np.abs(turn).sum(1), turn.sum(1), extent_z.mean(1), extent_z.min(1), extent_xy.mean(1)], 1)
    b = len(j)
    return np.concatenate([body.mean(1).reshape(b, -1), body.std(1).reshape(b, -1), speed.reshape(b, -1),
                           scalars], 1).astype(np.float32)


class FeatureClassifier:
    """Standardised features -> a 2-hidden-layer MLP (torch, CPU); deterministic for the seed."""

    def __init__(self, classes: int, seed: int = 0, hidden: int = 256, epochs: int = 60, lr: float = 1e-3) -> None:
        self.classes, self.seed, self.hidden, self.epochs, self.lr = classes, seed, hidden, epochs, lr
        self.mean = self.std = self.net = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> "FeatureClassifier":
        import torch

        keep = y >= 0
        x, y = x[keep], y[keep]
        if len(x) == 0:
            raise ValueError("no labelled window to train the feature classifier on")
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        f = x.shape[1]
        self.net = torch.nn.Sequential(torch.nn.Linear(f, self.hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                       torch.nn.Linear(self.hidden, self.hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(self.hidden, self.classes))
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=1e-4)
        xt = torch.from_numpy((x - self.mean) / self.std)
        yt = torch.from_numpy(y.astype(np.int64))
        self.net.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(xt), generator=g)
            for i in range(0, len(xt), 256):
                k = order[i:i + 256]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(self.net(xt[k]), yt[k])
                loss.backward()
                opt.step()
        self.net.eval()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))).argmax(1).numpy()


def store_windows(store_path: Path, runtime, split: tuple[str, str] | None, stride: int,
                  with_model: bool) -> dict:
    """Windows of a store: labels, person, newest stamp (s), distance, joint features, and with
    ``with_model`` the bundle's IMU predictions."""
    from despite_core.data.store import Store
    from despite_core.train.data import WindowDataset, collate, split_ids

    store = Store(store_path)
    ids = split_ids(store, *split) if split else list(store.sequence_ids)
    mods = ("skeleton", "imu") if with_model else ("skeleton",)
    ds = WindowDataset(store, ids, mods, stride=stride, cache_dir=store.root / ".cache",
                       imu_layout=runtime.bundle.imu_layout if with_model else None)
    joints = np.stack([ds.sequence_of(i).joints[s:s + WINDOW] for i, (_, s) in enumerate(ds.windows)])
    out = {"label": ds.labels, "person": np.array([ds.sequence_of(i).person for i in range(len(ds))]),
           "scene": np.array([ds.sequence_of(i).scene for i in range(len(ds))]),
           "newest": np.array([(s + WINDOW - 1) / FPS for _, s in ds.windows]),
           "distance": np.hypot(joints[:, -1, 0, 0], joints[:, -1, 0, 1]),
           "features": joint_features(joints)}
    if with_model:
        preds = []
        for i in range(0, len(ds), 64):
            batch = collate([ds[j] for j in range(i, min(i + 64, len(ds)))])
            preds.append(runtime.scores("imu", batch["imu"].numpy()).argmax(1))
        out["imu"] = np.concatenate(preds)
    return out


def scene_predictions(runtime, kind: str, seed: int, seconds: float, edition: int = 1) -> tuple[dict, dict]:
    """The scene's full scans through ground-truth segmentation and through the live pipeline, every
    scan (stride 1): ({(newest stamp ns, person): (true label, predicted)} of the ground-truth
    person-windows, {(newest stamp ns, person): labels of the live windows on that person's tracks})."""
    from despite_core.evaluate.perception import evaluate_scene

    res = evaluate_scene(runtime, kind, seed, seconds, stride=1, keep_records=True, edition=edition)
    live: dict[tuple[int, int], set[int]] = {}
    for r in res["records"]:
        if r["person"] > 0:
            live.setdefault((r["stamp"], r["person"]), set()).add(r["raw"])
    truth = {k: (v[0], v[-1]) for k, v in res["truth_windows"].items()}
    return truth, live


def summarise(rows: dict, class_names: list[str]) -> dict:
    """Accuracy per stage overall, per scene, per class (recall) and per distance band."""
    y = rows["label"]
    res: dict = {"windows": int(len(y)), "stages": {}}
    for st in STAGES:
        ok = rows[st] == y
        per_class = {class_names[c]: {"windows": int((y == c).sum()), "recall": round(float(ok[y == c].mean()), 4)}
                     for c in range(len(class_names)) if (y == c).any()}
        bands = {}
        for lo, hi in DISTANCE_BANDS:
            sel = (rows["distance"] >= lo) & (rows["distance"] < hi)
            if sel.any():
                bands[f"{lo:g}-{hi:g} m"] = {"windows": int(sel.sum()), "accuracy": round(float(ok[sel].mean()), 4)}
        scenes = {str(s): round(float(ok[rows["scene_key"] == s].mean()), 4) for s in np.unique(rows["scene_key"])}
        res["stages"][st] = {"accuracy": round(float(ok.mean()), 4),
                             "macro_recall": round(float(np.mean([v["recall"] for v in per_class.values()])), 4),
                             "per_scene": scenes, "per_class": per_class, "per_distance": bands}
    return res


def table(res: dict) -> str:
    """Markdown tables: overall with the per-scene range, per class, per distance band."""
    st = res["stages"]
    lines = ["| stage | accuracy | per scene (min-max) | macro recall |", "|---|---|---|---|"]
    for k in STAGES:
        sc = list(st[k]["per_scene"].values())
        lines.append(f"| {STAGE_TITLES[k]} | {st[k]['accuracy']:.3f} | {min(sc):.2f}-{max(sc):.2f} | "
                     f"{st[k]['macro_recall']:.3f} |")
    for title, part, value in (("class", "per_class", "recall"), ("distance", "per_distance", "accuracy")):
        lines += ["", f"| {title} | windows | " + " | ".join(STAGE_TITLES[k] for k in STAGES) + " |",
                  "|---|---:|" + "---|" * len(STAGES)]
        for row in st["joints"][part]:
            lines.append(f"| {row} | {st['joints'][part][row]['windows']} | "
                         + " | ".join(f"{st[k][part][row][value]:.2f}" for k in STAGES) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from despite_core.data.synth.generate import generate
    from despite_core.evaluate.perception import SCENE_TYPES, parse_seeds, world_config
    from despite_core.runtime.buffers import NS
    from despite_core.runtime.inference import Runtime

    if args.kind not in SCENE_TYPES:
        raise ValueError(f"unknown scene type {args.kind!r}; known: {list(SCENE_TYPES)}")
    seeds = parse_seeds(args.seeds)
    rt = Runtime(args.model, threads=args.threads)
    names = list(rt.bundle.class_names)
    t0 = time.perf_counter()
    from despite_core.data.store import Store
    if list(Store(args.train_store).class_names) != names:
        raise ValueError(f"{args.train_store}: the store's classes differ from the bundle's")
    from despite_core.data.synth.motion import class_names as world_classes

    scene_classes = list(world_classes(args.edition))
    if names[:len(scene_classes)] != scene_classes:
        raise ValueError(f"{args.model}: the bundle's classes {names} do not begin with the edition {args.edition} "
                         f"scenes' {scene_classes}; a class id must mean the same activity in both")
    train = store_windows(args.train_store, rt, (args.split_scheme, "train"), args.stride, with_model=False)
    clf = FeatureClassifier(len(names), seed=0).fit(train["features"], train["label"])
    cols = {k: [] for k in ("label", "distance", "scene_key", *STAGES)}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(seeds, desc="waterfall scenes", unit="scene", disable=args.quiet):
            cfg = world_config(args.kind, seed, args.seconds, args.edition)
            store = Path(tmp) / f"s{seed}"
            generate(cfg, store, progress=False)
            w = store_windows(store, rt, None, args.stride, with_model=True)
            truth, live = scene_predictions(rt, args.kind, seed, args.seconds, args.edition)
            keys = [(int(round(t * NS)), int(p)) for t, p in zip(w["newest"], w["person"])]
            # The store's labelled windows that ground-truth segmentation scores too (a window whose person
            # has no return in any frame is not scored by it).
            keep = np.array([lb >= 0 and k in truth for lb, k in zip(w["label"], keys)])
            for lb, k, ok in zip(w["label"], keys, keep):
                if ok and truth[k][0] != lb:
                    raise RuntimeError(f"scene {seed}: window {k} is labelled {lb} in the store and {truth[k][0]} "
                                       "by ground-truth segmentation (the two simulations differ)")
            kept = [k for k, ok in zip(keys, keep) if ok]
            cols["label"].append(w["label"][keep])
            cols["distance"].append(w["distance"][keep])
            cols["scene_key"].append(np.full(len(kept), seed))
            cols["joints"].append(clf.predict(w["features"][keep]))
            cols["imu"].append(w["imu"][keep])
            cols["pointcloud_gt"].append(np.array([truth[k][1] for k in kept], np.int64))
            cols["live"].append(np.array([truth[k][0] if truth[k][0] in live.get(k, ()) else -1 for k in kept],
                                         np.int64))
    rows = {k: np.concatenate(v) for k, v in cols.items()}
    res = {"model": str(args.model), "model_id": rt.bundle.meta["model_id"], "train_store": str(args.train_store),
           "scene_type": args.kind, "edition": args.edition, "seeds": seeds, "seconds": args.seconds, "stride": args.stride,
           "train_windows": int((train["label"] >= 0).sum()), **summarise(rows, names),
           "wall_seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "waterfall.json").write_text(json.dumps(res, indent=1))
    (args.out / "waterfall.md").write_text(table(res) + "\n")
    return res


def main(args: argparse.Namespace) -> int:
    """The command: run, print the tables, say where the files are."""
    res = run(args)
    print(f"waterfall over {res['windows']} held-out windows ({res['scene_type']}, seeds {args.seeds}, "
          f"{args.seconds:g} s each; joint classifier trained on {res['train_windows']} windows):\n")
    print(table(res))
    print(f"\nwritten: {args.out / 'waterfall.json'}, {args.out / 'waterfall.md'}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="model bundle (models/default)")
    p.add_argument("--train-store", type=Path, required=True,
                   help="store whose training split trains the joint-feature classifier (the bundle's training store)")
    p.add_argument("--split-scheme", default="by_subject", help="split scheme of --train-store")
    p.add_argument("--seeds", default="901-908", help="held-out scene seeds, e.g. 901-908 or 901,905")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each scene")
    p.add_argument("--kind", default="64 beams", help="scene type of `despite eval perception` (e.g. '16 beams')")
    p.add_argument("--edition", type=int, default=1, choices=(1, 2),
                   help="world edition of the held-out scenes (2: with fall, lying, get up; the bundle and "
                        "--train-store must know those classes)")
    p.add_argument("--stride", type=int, default=3, help="window stride in frames")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True, help="output directory (waterfall.json, waterfall.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
