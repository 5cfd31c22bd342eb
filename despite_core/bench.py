"""`despite bench inference`: encoder latency on this machine, side by side in one run.

Rows (median and p95 per call, milliseconds):
- point-cloud encoder per window, torch eager vs ONNX Runtime (the bundle's monolithic part);
- point-cloud encoder streaming, per new frame: the runtime's :class:`StreamingPointEncoder` on
  windows sliding by one frame, so each call computes one new tube per track, the window's
  recomputed first tube and the per-window part (B tracks in one batch);
- IMU encoder per window, torch eager vs ONNX Runtime.
At batch 1 and 8 (8 people in view). ONNX Runtime runs the bundle's own files; torch runs the same
architecture built from the bundle's config (random weights: no op here has data-dependent cost).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def timeit(fn, repeats: int, warmup: int = 3) -> dict:
    """Median and p95 wall time of ``fn()`` in ms, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": round(float(np.median(t)), 2), "p95_ms": round(float(np.percentile(t, 95)), 2)}


def run_inference(model: Path, threads: int, repeats: int, batches: tuple[int, ...] = (1, 8)) -> dict:
    import torch

    from despite_core.models.despite import DeSPITEConfig
    from despite_core.models.imu import ImuEncoder
    from despite_core.models.pst import PSTTransformer
    from despite_core.runtime.inference import Runtime, StreamingPointEncoder, TrackWindow

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rt = Runtime(model, providers="cpu", threads=threads)
    cfg = DeSPITEConfig.from_dict(rt.bundle.meta["provenance"]["config"])
    rows: list[dict] = []

    def add(part: str, engine: str, batch: int, unit: str, fn) -> None:
        rows.append({"part": part, "engine": engine, "batch": batch, "per": unit, **timeit(fn, repeats)})

    rng = np.random.default_rng(0)
    if rt.has("pointcloud_encoder"):
        pst = PSTTransformer(cfg.pointcloud).eval()
        frames, pts = cfg.pointcloud.frames, cfg.pointcloud.points
        for b in batches:
            x = (rng.normal(size=(b, frames, pts, 3)) * 0.3).astype(np.float32)
            xt = torch.from_numpy(x)
            with torch.no_grad():
                add("pointcloud", "torch eager", b, "window", lambda: pst(xt))
            add("pointcloud", "ORT monolithic", b, "window", lambda: rt.encode("pointcloud", x))
            if rt.has("pointcloud_tube"):
                enc = StreamingPointEncoder(rt)
                long = (rng.normal(size=(b, frames + repeats + 8, pts, 3)) * 0.3).astype(np.float32)
                stamps = np.arange(long.shape[1], dtype=np.int64) * 100_000_000
                start = [0]

                def new_frame() -> None:
                    s = start[0]
                    enc.encode([TrackWindow(k, stamps[s:s + frames], long[k, s:s + frames]) for k in range(b)])
                    start[0] += 1

                add("pointcloud", "ORT streaming", b, "new frame", new_frame)
    if rt.has("imu_encoder"):
        imu = ImuEncoder(cfg.imu).eval()
        for b in batches:
            m = rng.normal(size=(b, cfg.pointcloud.frames, cfg.imu.input_dim)).astype(np.float32)
            mt = torch.from_numpy(m)
            with torch.no_grad():
                add("imu", "torch eager", b, "window", lambda: imu(mt))
            add("imu", "ORT monolithic", b, "window", lambda: rt.encode("imu", m))

    def med(part, engine, b):
        return next((r["median_ms"] for r in rows if (r["part"], r["engine"], r["batch"]) == (part, engine, b)), None)

    ratios = {}
    for part in ("pointcloud", "imu"):
        for b in batches:
            eager, mono, stream = med(part, "torch eager", b), med(part, "ORT monolithic", b), med(part, "ORT streaming", b)
            if eager and mono:
                ratios[f"{part} torch / ORT monolithic, batch {b}"] = round(eager / mono, 2)
            if eager and stream:
                ratios[f"{part} torch per window / ORT streaming per new frame, batch {b}"] = round(eager / stream, 2)
            if stream:
                ratios[f"{part} ORT streaming per new frame per track, batch {b} (ms)"] = round(stream / b, 2)
    return {"model": str(model), "model_id": rt.bundle.meta["model_id"], "provider": rt.provider, "threads": threads,
            "repeats": repeats, "rows": rows, "ratios": ratios}


def table(result: dict) -> str:
    """The rows as a Markdown table (as pasted into the README)."""
    lines = ["| part | engine | batch | per | median ms | p95 ms |", "|---|---|---:|---|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['part']} | {r['engine']} | {r['batch']} | {r['per']} | {r['median_ms']} | {r['p95_ms']} |")
    lines += ["", *(f"- {k}: {v}" for k, v in result["ratios"].items())]
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure on this machine (inference latency)")
    kinds = p.add_subparsers(dest="bench", metavar="KIND", required=True)
    i = kinds.add_parser("inference", help="encoder latency: torch eager vs ONNX Runtime vs streaming, side by side",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("--model", type=Path, default=Path("models/default"), help="model bundle (default: %(default)s)")
    i.add_argument("--threads", type=int, default=2, help="CPU threads for both engines (default: %(default)s)")
    i.add_argument("--repeats", type=int, default=40, help="timed calls per row (default: %(default)s)")
    i.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    i.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.threads < 1:
        raise ValueError("--repeats and --threads must be at least 1")
    result = run_inference(args.model, args.threads, args.repeats)
    print(table(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0
