"""Bag sizes of the synthetic world per minute, with and without zstd chunk compression.

    .venv/bin/python bench/bag_size.py [--seconds 10]

Writes a short 2-person bag for each beam count, both ways, side by side in one run, and
extrapolates to MB per minute (the scan payload dominates; IMU at 100 Hz x 8 topics is small).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace

from despite_core.data.synth.lidar import LidarConfig
from despite_core.data.synth.world import WorldConfig, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    rows = []
    for beams in (16, 32, 64):
        row = {"beams": beams}
        for compress in (False, True):
            cfg = WorldConfig(minutes=args.seconds / 60, scene_minutes=args.seconds / 60, people=2, seed=0,
                              lidar=replace(LidarConfig(beams=beams)))
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                s = generate(cfg, None, bag=f"{d}/bag", progress=False, bag_compression=compress)
                key = "zstd" if compress else "raw"
                row[f"{key}_mb_per_min"] = round(s["bag_mb"] * 60 / args.seconds, 1)
                row[f"{key}_write_s_per_min"] = round((time.perf_counter() - t) * 60 / args.seconds, 1)
        row["zstd_saving"] = f"{100 * (1 - row['zstd_mb_per_min'] / row['raw_mb_per_min']):.0f} %"
        rows.append(row)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
