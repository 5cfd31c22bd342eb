"""`despite eval perception`: the live perception over a matrix of simulated scenes, scored against
ground-truth segmentation with the fixed rules (coverage, recall, false tracks, id switches; the
same :func:`despite_core.runtime.scoring.live_vs_truth` as bag-eval).

Every scene is simulated in-process (no bag is written): each scan goes through the live
HarPipeline (perception, tracking, windows, the model) and through ground-truth segmentation
without inference (the ground-truth person-windows). Scene types vary one thing against the
default (64 beams, 2 people, random mounting 1.2-2.5 m, normal activities): the LiDAR, the
mounting height, the number of people, everyone in place from the first scan, far people.
Deterministic for the seeds; keep development seeds and test seeds apart (README).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import tempfile
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

# name -> overrides of the default scene (64 beams x 1024 columns, 2 people, random mounting)
SCENE_TYPES: dict[str, dict] = {
    "16 beams": {"beams": 16},
    "32 beams": {"beams": 32},
    "64 beams": {},
    "128 beams": {"beams": 128, "columns": 2048},
    "mount 1.0 m": {"mount": (0.0, 1.0, 0.0)},
    "mount 2.5 m": {"mount": (0.0, 2.5, 6.0)},
    "1 person": {"people": 1},
    "4 people": {"people": 4},
    "8 people": {"people": 8},
    "8 people, 128 beams": {"people": 8, "beams": 128, "columns": 2048},
    "in place": {"in_place": True},
    "in place, 16 beams": {"in_place": True, "beams": 16},
    "in place, 4 people": {"in_place": True, "people": 4},
    "far 10-15 m, 32 beams": {"distance": (10.0, 15.0), "beams": 32},
    "far 10-15 m, 16 beams": {"distance": (10.0, 15.0), "beams": 16},
    "4 tall objects (cabinets, poles)": {"tall_objects": 4},
}


def world_config(kind: str, seed: int, seconds: float, edition: int = 1):
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.world import WorldConfig

    o = SCENE_TYPES[kind]
    lidar = LidarConfig(beams=o.get("beams", 64), columns=o.get("columns", 1024))
    return WorldConfig(minutes=seconds / 60, scene_minutes=seconds / 60, people=o.get("people", 2), seed=seed,
                       lidar=lidar, mount=o.get("mount"), in_place=o.get("in_place", False),
                       distance=o.get("distance"), tall_objects=o.get("tall_objects", 0), edition=edition)


def load_module_file(path: Path, name: str):
    """The Python module in file ``path``, imported as ``name`` (registered in ``sys.modules``, which
    dataclasses look their module up in): a past revision's or the working tree's copy of a module,
    beside the installed one."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_perception_from_git(rev: str):
    """The perception module as it was at git revision ``rev`` (to measure a change against what it
    replaces on the same scenes)."""
    roots = (Path.cwd(), Path(__file__).resolve().parents[2])       # a checkout: here, or where the code is
    for root, rel in ((r, f) for r in roots for f in ("despite_core/runtime/perception.py", "despite_ros/perception.py")):
        r = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{rel}"], capture_output=True, text=True)
        if r.returncode == 0:
            path = Path(tempfile.gettempdir()) / f"despite_perception_{rev.replace('/', '_')}.py"
            path.write_text(r.stdout)
            return load_module_file(path, f"despite_perception_{rev}")
    raise ValueError(f"no perception module at git revision {rev!r} in a git checkout at {[str(r) for r in roots]}")


def evaluate_scene(runtime, kind: str, seed: int, seconds: float, *, background: bool = True, stride: int = 3,
                   baseline=None, max_missed: int | None = None, keep_records: bool = False,
                   edition: int = 1) -> dict:
    """One simulated scene through the live pipeline and ground-truth segmentation; its metrics.

    With ``keep_records``: also the live window records (``records``) and the ground-truth
    person-windows labelled by the model on ground-truth segmentation of the same scans
    (``truth_windows``: (newest stamp ns, person) -> (true label, distance m, visible, predicted))."""
    from despite_core.data.synth.bag import scan_arrays
    from despite_core.data.synth.world import build_scene, ground_truth, iter_timeline
    from despite_core.runtime.buffers import NS
    from despite_core.runtime.perception import PerceptionConfig
    from despite_core.runtime.pipeline import HarPipeline
    from despite_core.runtime.scoring import GroundTruth, Scoreboard, live_vs_truth, track_person, truth_window

    cfg = world_config(kind, seed, seconds, edition)
    scene = build_scene(cfg, 0, seconds)
    names = runtime.bundle.class_names
    pcfg = PerceptionConfig(background=background)
    if max_missed is not None:
        pcfg = replace(pcfg, max_missed=max_missed)
    live = HarPipeline(runtime, pcfg, stride=stride)
    if baseline is not None:
        live.perception = baseline.Perception(baseline.PerceptionConfig(background=background))
    truth_pipe = HarPipeline(runtime, stride=stride, infer=keep_records)
    gt = GroundTruth(list(names))
    board = Scoreboard(list(names))
    truth: dict = {}
    predicted: dict = {}
    scan_ms: list[float] = []
    by_points = [[0, 0] for _ in POINT_BINS]              # per-scan person detection by the person's returns
    points: dict[int, list[int]] = {}
    for t, kind_, scan in iter_timeline(scene, full=True):
        if kind_ != "scan":
            continue
        s = int(round(t * NS))
        for pid, cid, _ in ground_truth(scene, t):
            gt.by_stamp.setdefault(pid, {})[s] = cid
        a = scan_arrays(scan)
        xyz = np.stack([a["x"], a["y"], a["z"]], 1)
        ids = a["gt_person"]
        out = live.process_scan(xyz, s, ids)
        if out.perception is not None:
            scan_ms.append(out.perception.seconds * 1e3)
            found = {int(np.bincount(ids[q.indices]).argmax()) for q in out.perception.people}
            counts = np.bincount(ids, minlength=cfg.people + 1)
            for pid in range(1, cfg.people + 1):
                b = int(np.searchsorted(POINT_BINS, counts[pid], side="right")) - 1
                by_points[b][0] += 1
                by_points[b][1] += pid in found
        for r in out.results:
            person = track_person(r.extras)
            board.score_window(r.stamps[-1], r.track_id, person, gt.labels(person, r.stamps) if person else [],
                               r.class_id, r.confidence)
        for r in truth_pipe.process_ground_truth(xyz, s, ids, gt.people_at(s)).results:
            w = truth_window(gt, r)
            if w is not None:
                truth[w[0]] = w[1]
                if keep_records:
                    predicted[w[0]] = r.class_id
                points.setdefault(w[0][1], []).append(int(sum(c.get(w[0][1], 0) for c in r.extras[-1:])))
    m = live_vs_truth(truth, board.records, seconds)
    summary = board.summary()
    lidar = scene.lidar.config
    return {"type": kind, "seed": seed, "seconds": seconds, "background": background, **m,
            "accuracy": summary["accuracy"], "live_windows": summary["windows"],
            "people": cfg.people, "beams": lidar.beams, "mount_height": round(lidar.mount_xyz[2], 2),
            "perception_ms_p50": round(float(np.median(scan_ms)), 2) if scan_ms else None,
            "perception_ms_p95": round(float(np.percentile(scan_ms, 95)), 2) if scan_ms else None,
            "person_points_median": int(np.median([v for vs in points.values() for v in vs])) if points else None,
            "detected_by_points": {_bin_name(k): v for k, v in enumerate(by_points)},
            **({"records": board.records, "truth_windows": {k: (*v, predicted[k]) for k, v in truth.items()}}
               if keep_records else {})}


POINT_BINS = (0, 1, 5, 10, 20, 50, 100, 200)


def _bin_name(k: int) -> str:
    lo = POINT_BINS[k]
    return f"{lo}+" if k == len(POINT_BINS) - 1 else (f"{lo}" if POINT_BINS[k + 1] == lo + 1 else f"{lo}-{POINT_BINS[k + 1] - 1}")


def detection_by_points(rows: list[dict]) -> dict:
    """Per-scan person detection rate by how many returns the person has (all scenes pooled)."""
    tot: dict[str, list[int]] = {}
    for r in rows:
        for k, (n, hit) in r["detected_by_points"].items():
            t = tot.setdefault(k, [0, 0])
            t[0] += n
            t[1] += hit
    return {k: {"scans": n, "detected": round(h / n, 4) if n else None} for k, (n, h) in tot.items()}


def aggregate(rows: list[dict]) -> dict:
    """Per scene type: pooled coverage and recall (over all truth windows), spread over seeds, rates."""
    out = {}
    for kind in dict.fromkeys(r["type"] for r in rows):
        rs = [r for r in rows if r["type"] == kind]
        n = sum(r["truth_windows"] for r in rs)
        cov = sum((r["coverage"] or 0) * r["truth_windows"] for r in rs) / n if n else None
        rec = sum((r["recall"] or 0) * r["truth_windows"] for r in rs) / n if n else None
        nv = sum(r["visible_truth_windows"] for r in rs)
        covv = sum((r["coverage_visible"] or 0) * r["visible_truth_windows"] for r in rs) / nv if nv else None
        minutes = sum(r["minutes"] for r in rs)
        person_minutes = sum(r["minutes"] * r["people"] for r in rs)
        out[kind] = {"scenes": len(rs), "truth_windows": n, "coverage": round(cov, 4) if cov is not None else None,
                     "coverage_min": min((r["coverage"] for r in rs if r["coverage"] is not None), default=None),
                     "recall": round(rec, 4) if rec is not None else None,
                     "visible_fraction": round(nv / n, 4) if n else None,
                     "coverage_visible": round(covv, 4) if covv is not None else None,
                     "false_tracks_per_minute": round(sum(r["false_tracks"] for r in rs) / minutes, 3),
                     "id_switches_per_person_minute": round(sum(r["id_switches"] for r in rs) / person_minutes, 3),
                     "perception_ms_p95": max((r["perception_ms_p95"] or 0) for r in rs)}
    n = sum(v["truth_windows"] for v in out.values())
    nv = sum(v["visible_fraction"] * v["truth_windows"] for v in out.values())
    out["all"] = {"scenes": len(rows), "truth_windows": n, "visible_fraction": round(nv / n, 4) if n else None,
                  "coverage_visible": round(sum(v["coverage_visible"] * v["visible_fraction"] * v["truth_windows"]
                                                for v in out.values()) / nv, 4) if nv else None,
                  "coverage": round(sum(v["coverage"] * v["truth_windows"] for v in out.values()) / n, 4) if n else None,
                  "recall": round(sum(v["recall"] * v["truth_windows"] for v in out.values()) / n, 4) if n else None,
                  "false_tracks_per_minute": round(sum(r["false_tracks"] for r in rows) / sum(r["minutes"] for r in rows), 3),
                  "id_switches_per_person_minute": round(sum(r["id_switches"] for r in rows)
                                                         / sum(r["minutes"] * r["people"] for r in rows), 3),
                  "worst_type_coverage": min(v["coverage"] for v in out.values() if v["coverage"] is not None)}
    return out


def table(agg: dict) -> str:
    """The README's markdown table."""
    head = ("| scenes | n | truth windows | coverage | worst scene | recall | visible | coverage of visible | "
            "false tracks / min | id switches / person / min |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, v in agg.items():
        worst = v.get("coverage_min", v.get("worst_type_coverage"))
        lines.append(f"| {kind} | {v['scenes']} | {v['truth_windows']} | {v['coverage']:.3f} | "
                     f"{worst:.3f} | {v['recall']:.3f} | {v['visible_fraction']:.2f} | {v['coverage_visible']:.3f} | "
                     f"{v['false_tracks_per_minute']:.2f} | {v['id_switches_per_person_minute']:.3f} |")
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """``1-4`` or ``1,5,9``."""
    if "-" in text:
        lo, hi = (int(x) for x in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(x) for x in text.split(",")]


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from despite_core.runtime.inference import Runtime, default_bundle_path

    kinds = args.types or list(SCENE_TYPES)
    bad = [k for k in kinds if k not in SCENE_TYPES]
    if bad:
        raise ValueError(f"unknown scene types {bad}; choose from {list(SCENE_TYPES)}")
    runtime = Runtime(args.model or default_bundle_path(), providers="cpu", threads=1)
    baseline = load_perception_from_git(args.baseline) if args.baseline else None
    seeds = parse_seeds(args.seeds)
    jobs = [(k, s) for k in kinds for s in seeds]
    rows = []
    t0 = time.perf_counter()
    for kind, seed in tqdm(jobs, desc="perception eval", unit="scene", disable=args.quiet):
        rows.append(evaluate_scene(runtime, kind, seed, args.seconds, background=not args.no_background,
                                   stride=args.stride, baseline=baseline, max_missed=args.max_missed))
    agg = aggregate(rows)
    result = {"seeds": seeds, "seconds": args.seconds, "background": not args.no_background,
              "baseline": args.baseline, "model_id": runtime.bundle.meta["model_id"], "types": agg,
              "detected_by_points": detection_by_points(rows), "scenes": rows,
              "wall_s": round(time.perf_counter() - t0, 1)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    print(table(agg))
    print("\n| returns of the person in the scan | " + " | ".join(result["detected_by_points"]) + " |")
    print("|---|" + "---|" * len(result["detected_by_points"]))
    print("| detected in the scan | " + " | ".join("n/a" if v["detected"] is None else f"{v['detected']:.2f} ({v['scans']})"
                                                   for v in result["detected_by_points"].values()) + " |")
    return {k: result[k] for k in ("seeds", "seconds", "background", "baseline", "wall_s")} | {"all": agg["all"]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", default="101-103", help="scene seeds, 'A-B' or 'A,B,C' (development: 1-16; test: 101+)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per scene")
    p.add_argument("--types", nargs="*", default=None, metavar="TYPE", help=f"scene types (default all): {list(SCENE_TYPES)}")
    p.add_argument("--no-background", action="store_true", help="background model off (a moving sensor)")
    p.add_argument("--model", type=Path, default=None, help="model bundle (default: the shipped one)")
    p.add_argument("--stride", type=int, default=3, help="windows every N selected scans (as har_node)")
    p.add_argument("--max-missed", type=int, default=None, help="scans a track survives unseen (default: PerceptionConfig's)")
    p.add_argument("--baseline", default=None, metavar="GIT_REV",
                   help="run the perception module of this git revision instead (to compare on the same scenes)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (every scene and the per-type table)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

