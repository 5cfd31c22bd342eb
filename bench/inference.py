"""Inference latency on this machine, side by side in one run (median and p95 per call):
point-cloud encoder per window at batch 1 and 8 in torch eager, ONNX Runtime monolithic, and ONNX
Runtime streaming per new frame (one tube + the window's recomputed first tube + the window
part); the IMU encoder in torch and ONNX Runtime. Weights are random: latency does not depend on
them.

    .venv/bin/python bench/inference.py [--threads 2] [--repeats 30]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from despite_core.export import _export, _Tube, _Window
from despite_core.models.imu import ImuEncoder
from despite_core.models.pst import PSTTransformer


def timeit(fn, repeats: int) -> dict:
    fn()
    fn()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": round(float(np.median(t)), 2), "p95_ms": round(float(np.percentile(t, 95)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    pst, imu = PSTTransformer().eval(), ImuEncoder().eval()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        x2 = torch.randn(2, 24, 256, 3) * 0.3
        _export(pst, x2, d / "pc.onnx", "points", ["features", "embedding"], 17)
        f0 = x2[:, 0]
        _export(_Tube(pst), (f0, f0, f0), d / "tube.onnx", ("prev", "cur", "next"), ["anchors", "tube"], 17)
        with torch.no_grad():
            a2, t2 = pst.tube(x2)
        _export(_Window(pst), (a2, t2), d / "win.onnx", ("anchors", "tubes"), ["features", "embedding"], 17)
        _export(imu, torch.randn(2, 24, 48), d / "imu.onnx", "imu", ["features", "embedding"], 17)
        sess = {k: ort.InferenceSession(str(d / f"{k}.onnx"), opts, providers=["CPUExecutionProvider"])
                for k in ("pc", "tube", "win", "imu")}
        for b in (1, 8):
            x = (torch.randn(b, 24, 256, 3) * 0.3)
            xn = x.numpy()
            with torch.no_grad():
                rows[f"pointcloud torch eager, per window, batch {b}"] = timeit(lambda: pst(x), a.repeats)
            rows[f"pointcloud ORT monolithic, per window, batch {b}"] = timeit(lambda: sess["pc"].run(None, {"points": xn}), a.repeats)
            with torch.no_grad():
                anchors, tubes = (t.numpy() for t in pst.tube(x))

            def new_frame():
                # the newest frame's tube (its right neighbour just arrived), the window's first tube
                # (replicated left frame), then the per-window remainder on 12 cached tubes
                sess["tube"].run(None, {"prev": xn[:, 21], "cur": xn[:, 22], "next": xn[:, 23]})
                sess["tube"].run(None, {"prev": xn[:, 0], "cur": xn[:, 0], "next": xn[:, 1]})
                sess["win"].run(None, {"anchors": anchors, "tubes": tubes})

            rows[f"pointcloud ORT streaming, per new frame, batch {b}"] = timeit(new_frame, a.repeats)
            m = torch.randn(b, 24, 48)
            with torch.no_grad():
                rows[f"imu torch eager, batch {b}"] = timeit(lambda: imu(m), a.repeats)
            rows[f"imu ORT, batch {b}"] = timeit(lambda: sess["imu"].run(None, {"imu": m.numpy()}), a.repeats)
    for b in (1, 8):
        e = rows[f"pointcloud torch eager, per window, batch {b}"]["median_ms"]
        rows[f"ratio torch/ORT monolithic, batch {b}"] = round(e / rows[f"pointcloud ORT monolithic, per window, batch {b}"]["median_ms"], 2)
        rows[f"ratio torch/ORT streaming, batch {b}"] = round(e / rows[f"pointcloud ORT streaming, per new frame, batch {b}"]["median_ms"], 2)
    print(json.dumps({"threads": a.threads, "repeats": a.repeats, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
