"""Perception time per scan: a git revision's perception against the working tree's file (not the
installed one), side by side on the same simulated scans (ROS-free; the modules they import, and the
person classifier, are the installed ones for both).

    .venv/bin/python bench/perception_revisions.py 8c7e829

Two scenes (64 beams x 1024 columns with 2 people; 128 x 2048 with 8), 8 s each, seed 3; each
perception runs over every scan twice, in alternating order (old, new, then new, old), from a fresh
state each time (the first second, while the background learns, included). Prints p50 / p95 per
scan and the ratio. `despite-ros bench perception` measures the front end against Open3D.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("revision", help="git revision whose despite_core/runtime/perception.py is the baseline")
    ap.add_argument("--seconds", type=float, default=8.0, help="simulated seconds per scene")
    args = ap.parse_args()

    from despite_core.data.synth.bag import scan_arrays
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.world import WorldConfig, build_scene, iter_timeline
    from despite_core.evaluate.perception import load_module_file, load_perception_from_git

    old = load_perception_from_git(args.revision)
    new = load_module_file(Path(__file__).resolve().parents[1] / "despite_core/runtime/perception.py",
                           "despite_perception_worktree")
    print(f"| scene | {args.revision} p50 ms | now p50 ms | {args.revision} p95 ms | now p95 ms | ratio p50 (now / then) |")
    print("|---|---:|---:|---:|---:|---:|")
    for beams, cols, people in ((64, 1024, 2), (128, 2048, 8)):
        cfg = WorldConfig(minutes=args.seconds / 60, scene_minutes=args.seconds / 60, people=people, seed=3,
                          lidar=LidarConfig(beams=beams, columns=cols))
        scans = []
        for t, kind, scan in iter_timeline(build_scene(cfg, 0, args.seconds), full=True):
            if kind == "scan":
                a = scan_arrays(scan)
                scans.append((t, np.stack([a["x"], a["y"], a["z"]], 1).astype(np.float32)))
        ms: dict[str, list[float]] = {"old": [], "new": []}
        for order in ((("old", old), ("new", new)), (("new", new), ("old", old))):
            for name, mod in order:
                per = mod.Perception(mod.PerceptionConfig())
                for t, xyz in scans:
                    t0 = time.perf_counter()
                    per.process(xyz, t)
                    ms[name].append((time.perf_counter() - t0) * 1e3)
        o50, n50 = np.percentile(ms["old"], 50), np.percentile(ms["new"], 50)
        o95, n95 = np.percentile(ms["old"], 95), np.percentile(ms["new"], 95)
        print(f"| {beams} beams x {cols}, {people} people ({len(scans)} scans x 2) | {o50:.2f} | {n50:.2f} | "
              f"{o95:.2f} | {n95:.2f} | {n50 / o50:.2f} |")


if __name__ == "__main__":
    main()
