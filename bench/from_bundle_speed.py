"""How long recovering the shipped bundle's weights from its ONNX files takes (`--init
models/default`; despite_core.train.from_bundle.checkpoint_from_bundle), moved out of the test
suite: correctness tests never depend on the machine's speed (test_from_bundle.py checks the
recovery is complete and exact). Wall time of each run and the median, and the time the recovery
itself records (``source_bundle.seconds``).

    .venv/bin/python bench/from_bundle_speed.py [--bundle models/default] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from despite_core.train.from_bundle import checkpoint_from_bundle

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    walls, recorded = [], []
    for _ in range(max(a.repeats, 1)):
        t0 = time.perf_counter()
        state = checkpoint_from_bundle(a.bundle)
        walls.append(time.perf_counter() - t0)
        recorded.append(state["source_bundle"]["seconds"])
    print(f"recovery of {a.bundle}: " + ", ".join(f"{w:.2f}" for w in walls) +
          f" s; median {statistics.median(walls):.2f} s (recorded by the recovery: median "
          f"{statistics.median(recorded):.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
