"""Training throughput on this machine: windows/s of one optimisation step (forward, loss,
backward, Adam) for the full reference-size model and the reduced `--small` model, DeSPIE and
DeSPITE, side by side in one run, plus each encoder's share.

    .venv/bin/python bench/train_throughput.py [--batch 64] [--steps 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from despite_core.losses import DeSPITELoss
from despite_core.train.pretrain import model_config
from despite_core.models.despite import DeSPITEModel


def batch(b: int, with_text: bool) -> dict:
    out = {"pointcloud": torch.randn(b, 24, 256, 3) * 0.3, "imu": torch.randn(b, 24, 48),
           "skeleton": torch.randn(b, 24, 24, 3) * 0.3}
    if with_text:
        out["text"] = [f"a person does activity {i % 15}" for i in range(b)]
    return out


def step_rate(preset: str, small: bool, b: int, steps: int) -> dict:
    model = DeSPITEModel(model_config(argparse.Namespace(preset=preset, small=small)))
    loss_fn = DeSPITELoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = batch(b, "text" in model.modalities)
    mask = torch.ones(b, dtype=torch.bool)

    def one():
        total, _ = loss_fn(model(x), mask)
        opt.zero_grad()
        total.backward()
        opt.step()

    one()  # warm-up (allocator, thread pool, the text cache)
    one()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    dt = (time.perf_counter() - t) / steps
    per_encoder = {}
    for m in ("pointcloud", "imu", "skeleton"):
        enc = model.encoders[m]
        t = time.perf_counter()
        for _ in range(steps):
            enc(x[m])[1].sum().backward()
        per_encoder[m] = round((time.perf_counter() - t) / steps * 1e3, 1)
    params = sum(p.numel() for p in model.parameters())
    return {"preset": preset, "model": "small" if small else "full", "params": params,
            "windows_per_s": round(b / dt, 1), "step_ms": round(dt * 1e3, 1), "encoder_fwd_bwd_ms": per_encoder}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = [step_rate(p, s, a.batch, a.steps) for p in ("DeSPIE", "DeSPITE") for s in (False, True)]
    print(json.dumps({"batch": a.batch, "threads": a.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
