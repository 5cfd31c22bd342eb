"""PointCloud2 decoding speed (moved out of the test suite: correctness tests never depend on the
machine's speed). Median of 15 runs after a warm-up, 65,536 points with x, y, z, intensity, t, ring
(1 % NaN), against the budget of 20 ms per scan, and the full decode's cost relative to x, y, z.

    .venv/bin/python bench/pointcloud2_decode.py [--points N]
"""
from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np

from despite_core.data import pointcloud2 as pc2


def median_time(fn, repeats: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=65536)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    n = a.points
    arrays = {"x": rng.normal(size=n).astype(np.float32), "y": rng.normal(size=n).astype(np.float32),
              "z": rng.normal(size=n).astype(np.float32), "intensity": rng.uniform(0, 1, n).astype(np.float32),
              "t": rng.uniform(0, 0.1, n).astype(np.float32), "ring": rng.integers(0, 64, n).astype(np.uint16)}
    arrays["x"][::97] = np.nan
    fields, point_step, data = pc2.encode(arrays)
    msg = SimpleNamespace(height=1, width=n, fields=fields, is_bigendian=False, point_step=point_step,
                          row_step=point_step * n, data=data, is_dense=False)
    t_xyz = median_time(lambda: pc2.decode_xyz(msg))
    t_all = median_time(lambda: pc2.decode(msg))
    print(f"{n} points: decode_xyz {t_xyz * 1e3:.2f} ms, decode (6 fields) {t_all * 1e3:.2f} ms "
          f"({t_all / t_xyz:.2f}x), budget 20 ms per scan: {'within' if max(t_xyz, t_all) < 0.020 else 'OVER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
