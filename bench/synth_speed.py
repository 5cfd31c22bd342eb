"""Benchmark the synthetic world: the issue's speed figure and where the time goes.

    .venv/bin/python bench/synth_speed.py                # 10 min, 2 people, 64 beams, 10 Hz -> store
    .venv/bin/python bench/synth_speed.py --minutes 1    # quicker

Prints (1) the wall time of `generate` into a sequence store (the budget is 3 minutes for the
default 10-minute scene) and (2), side by side in one run on one scene, the per-scan cost of the
store path (only rays that can reach a person are cast against the bodies) and of the bag path
(the full scan assembled every sweep) and the ratio.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace

import numpy as np

from despite_core.data.synth.lidar import LidarConfig
from despite_core.data.synth.generate import generate
from despite_core.data.synth.world import WorldConfig, build_scene, iter_scans


def per_scan_ms(scene, full: bool, n: int) -> np.ndarray:
    times = []
    it = iter_scans(scene, full=full, noise_scale=1.0)
    for _ in range(n):
        t = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t)
    return np.asarray(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--beams", type=int, default=64)
    ap.add_argument("--scans", type=int, default=200, help="scans for the side-by-side per-scan timing")
    args = ap.parse_args()
    lidar = replace(LidarConfig(beams=args.beams))
    cfg = WorldConfig(minutes=args.minutes, people=args.people, seed=0, lidar=lidar)
    with tempfile.TemporaryDirectory() as d:
        summary = generate(cfg, f"{d}/store", progress=True)
    scene = build_scene(cfg, 0, 60.0)
    store_path = per_scan_ms(scene, False, args.scans)
    bag_path = per_scan_ms(scene, True, args.scans)
    result = {
        "scene": f"{args.minutes:g} min, {args.people} people, {args.beams} beams x {lidar.columns} columns, {lidar.rate:g} Hz",
        "generate_store_s": summary["seconds"],
        "budget_s": 180.0 * args.minutes / 10.0,
        "scans": summary["scans"],
        "per_scan_ms_store_path": {"median": round(float(np.median(store_path)), 2), "p95": round(float(np.percentile(store_path, 95)), 2)},
        "per_scan_ms_full_scan": {"median": round(float(np.median(bag_path)), 2), "p95": round(float(np.percentile(bag_path, 95)), 2)},
        "full_over_store_ratio": round(float(np.median(bag_path) / np.median(store_path)), 2),
        "points_per_person_frame_mean": round(summary["points_per_person_frame"]["mean"], 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
