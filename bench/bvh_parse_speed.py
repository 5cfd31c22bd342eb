"""BVH parser speed on deep rigs (moved out of the test suite: correctness tests never depend on the
machine's speed; test_fuzz_importers.py::test_bvh_deep_nesting_is_linear counts the interpreter's
work instead). Joints nested N deep, each inside the one before, parsed and mapped onto SMPL
(which refuses the rig: no core joints); wall time per size and per joint, which stays flat when
the parser is linear.

    .venv/bin/python bench/bvh_parse_speed.py [--sizes 10000 30000 100000]
"""
from __future__ import annotations

import argparse
import time
import warnings

from despite_core.data.importers import bvh_format, bvh_rig
from despite_core.data.importers.common import ImporterError


def chain(n: int) -> str:
    """As test_fuzz_importers._chain(n, "CHANNELS 0"): a rig of n JOINTs, each inside the one before."""
    lines = ["HIERARCHY", "ROOT r", "{", "OFFSET 0 0 0", "CHANNELS 3 Xposition Yposition Zposition"]
    for i in range(n):
        lines += [f"JOINT j{i}", "{", "OFFSET 0 1 0", "CHANNELS 0"]
    lines += ["}"] * (n + 1) + ["MOTION", "Frames: 2", "Frame Time: 0.1"] + ["0 0 0"] * 2
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    a = p.parse_args()
    warnings.filterwarnings("ignore")             # the rig's implausible size warns; not what is measured
    for n in a.sizes:
        text = chain(n)
        t0 = time.perf_counter()
        motion = bvh_format.parse_bvh(text, "deep.bvh")
        t1 = time.perf_counter()
        try:
            bvh_rig.bvh_to_kinematics(motion)
        except ImporterError:
            pass
        t2 = time.perf_counter()
        print(f"{n:>8d} joints ({len(text) / 1e6:.1f} MB): parse {t1 - t0:6.2f} s, map {t2 - t1:6.2f} s, "
              f"{(t2 - t0) / n * 1e6:6.1f} us per joint")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
