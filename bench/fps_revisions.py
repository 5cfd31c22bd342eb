"""Farthest point sampling time per scan: a git revision's `despite_core/data/sampling.py` against the
working tree's file (not the installed one), side by side on the same people (ROS-free).

    .venv/bin/python bench/fps_revisions.py 1ab702e

The people of each scan come from the working tree's perception on simulated scans (64 beams x 1024
columns with 2 people; 128 x 2048 with 8; 8 s each, seed 3): every scan's point sets of its tracked
people, normalised to 256 points as the runtime does (`normalise_frames`: centring, then one
batched FPS loop for the scan). Each version runs over every scan twice, in alternating order.
Prints p50 / p95 per scan, the ratio, and whether both give identical frames.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


ROOT = Path(__file__).resolve().parents[1]


def sampling_at(rev: str | None):
    """The sampling module at git revision ``rev``, or the working tree's file (None)."""
    if rev is None:
        path, name = ROOT / "despite_core/data/sampling.py", "despite_sampling_worktree"
    else:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:despite_core/data/sampling.py"],
                             capture_output=True, text=True, check=True).stdout
        path, name = Path(tempfile.gettempdir()) / f"despite_sampling_{rev.replace('/', '_')}.py", f"despite_sampling_{rev}"
        path.write_text(src)
    from despite_core.evaluate.perception import load_module_file

    return load_module_file(path, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("revision", help="git revision whose despite_core/data/sampling.py is the baseline")
    ap.add_argument("--seconds", type=float, default=8.0, help="simulated seconds per scene")
    args = ap.parse_args()

    from despite_core.data.synth.bag import scan_arrays
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.world import WorldConfig, build_scene, iter_timeline
    from despite_core.runtime.perception import Perception, PerceptionConfig

    old, new = sampling_at(args.revision), sampling_at(None)
    print(f"| scene | people per scan (median) | points per person (median) | {args.revision} p50 ms | now p50 ms | "
          f"{args.revision} p95 ms | now p95 ms | ratio p50 (now / then) | identical |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for beams, cols, people in ((64, 1024, 2), (128, 2048, 8)):
        cfg = WorldConfig(minutes=args.seconds / 60, scene_minutes=args.seconds / 60, people=people, seed=3,
                          lidar=LidarConfig(beams=beams, columns=cols))
        per = Perception(PerceptionConfig())
        scans = []
        for t, kind, scan in iter_timeline(build_scene(cfg, 0, args.seconds), full=True):
            if kind == "scan":
                a = scan_arrays(scan)
                found = per.process(np.stack([a["x"], a["y"], a["z"]], 1).astype(np.float32), t).people
                if found:
                    scans.append([p.points for p in found])
        ms: dict[str, list[float]] = {"old": [], "new": []}
        same = True
        for order in ((("old", old), ("new", new)), (("new", new), ("old", old))):
            for name, mod in order:
                for clouds in scans:
                    t0 = time.perf_counter()
                    mod.normalise_frames(clouds, 256)
                    ms[name].append((time.perf_counter() - t0) * 1e3)
        for clouds in scans:
            same &= all(np.array_equal(a, b) for a, b in zip(old.normalise_frames(clouds, 256),
                                                             new.normalise_frames(clouds, 256)))
        o50, n50 = np.percentile(ms["old"], 50), np.percentile(ms["new"], 50)
        o95, n95 = np.percentile(ms["old"], 95), np.percentile(ms["new"], 95)
        n_people = int(np.median([len(c) for c in scans]))
        n_points = int(np.median([len(p) for c in scans for p in c]))
        print(f"| {beams} beams x {cols}, {people} people ({len(scans)} scans x 2) | {n_people} | {n_points} | "
              f"{o50:.2f} | {n50:.2f} | {o95:.2f} | {n95:.2f} | {n50 / o50:.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
