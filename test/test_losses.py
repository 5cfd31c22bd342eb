"""The DeSPITE loss: a hand-computed value, masked text, every preset's pairs, and the distributed
gather (patched collectives, and a real 2-process gloo run against one process on the global batch)."""
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from despite_core import losses
from despite_core.losses import DeSPITELoss, LossConfig, info_nce


def unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def test_info_nce_hand_computed():
    a = unit([[1.0, 0.0], [0.0, 1.0]])
    b = unit([[1.0, 0.0], [0.6, 0.8]])
    t = 0.1
    # logits = a @ b.T / t = [[10, 6], [0, 8]]
    row = [-math.log(math.exp(10) / (math.exp(10) + math.exp(6))), -math.log(math.exp(8) / (math.exp(0) + math.exp(8)))]
    col = [-math.log(math.exp(10) / (math.exp(10) + math.exp(0))), -math.log(math.exp(8) / (math.exp(6) + math.exp(8)))]
    want = sum(row) / 2 + sum(col) / 2
    assert info_nce(a, b, t).item() == pytest.approx(want, rel=1e-6)


def test_total_weights_and_masked_text():
    g = torch.Generator().manual_seed(0)
    emb = {m: unit(torch.randn(6, 8, generator=g)) for m in ("skeleton", "pointcloud", "imu", "text")}
    mask = torch.tensor([True, True, False, True, False, True])
    loss = DeSPITELoss(LossConfig(alpha=0.5, beta=0.5, temperature=0.1))
    total, terms = loss(emb, mask)
    assert set(terms) == {"skeleton-text", "pointcloud-text", "imu-text", "skeleton-pointcloud", "skeleton-imu", "pointcloud-imu"}
    # Text terms use only the windows with text, as positives and as negatives.
    assert terms["imu-text"].item() == pytest.approx(info_nce(emb["imu"][mask], emb["text"][mask], 0.1).item())
    assert total.item() == pytest.approx(0.5 * sum(v.item() for v in terms.values()), rel=1e-6)
    # Changing the text of an unmasked-out window changes nothing.
    emb2 = dict(emb, text=emb["text"].clone())
    emb2["text"][2] = unit(torch.randn(8, generator=g))
    assert loss(emb2, mask)[0].item() == pytest.approx(total.item())
    # No text at all: the text terms are zero, the sensor pairs remain.
    total0, terms0 = loss(emb, torch.zeros(6, dtype=torch.bool))
    assert terms0["imu-text"].item() == 0.0
    assert total0.item() == pytest.approx(0.5 * sum(terms0[k].item() for k in ("skeleton-pointcloud", "skeleton-imu", "pointcloud-imu")))


def test_learnable_temperature_and_errors():
    loss = DeSPITELoss(LossConfig(learnable_temperature=True))
    assert any(p is loss.log_temperature for p in loss.parameters())
    assert not list(DeSPITELoss().parameters())
    with pytest.raises(ValueError, match="at least two modalities"):
        DeSPITELoss()({"imu": unit(torch.randn(2, 4))})


def test_gather_with_patched_collectives(monkeypatch):
    """Rank 1 of 2: the gathered batch is [rank 0's, ours]; only our slice carries gradient."""
    other = unit(torch.randn(3, 4))
    monkeypatch.setattr(losses.dist, "is_available", lambda: True)
    monkeypatch.setattr(losses.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(losses.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(losses.dist, "get_rank", lambda: 1)

    def fake_all_gather(parts, x):
        parts[0].copy_(other if x.dtype != torch.bool else torch.ones(3, dtype=torch.bool))
        parts[1].copy_(x)

    monkeypatch.setattr(losses.dist, "all_gather", fake_all_gather)
    mine = unit(torch.randn(3, 4)).requires_grad_(True)
    g = losses.gather_with_grad(mine)
    assert g.shape == (6, 4) and torch.equal(g[:3], other) and g[3:].data_ptr() != other.data_ptr()
    g.sum().backward()
    assert torch.equal(mine.grad, torch.ones(3, 4))


DDP_SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
from despite_core.losses import DeSPITELoss
rank, world = int(sys.argv[1]), int(sys.argv[2])
dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{sys.argv[3]}")
g = torch.Generator().manual_seed(0)
emb = {m: torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1) for m in ("skeleton", "pointcloud", "imu", "text")}
mask = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
sl = slice(rank * 4, rank * 4 + 4)
total, _ = DeSPITELoss()({m: e[sl] for m, e in emb.items()}, mask[sl])
print(f"{total.item():.8f}")
dist.destroy_process_group()
"""


def test_two_process_gloo_loss_equals_single_process(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp_loss.py"
    script.write_text(DDP_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), str(r), "2", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for r in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outs.append(float(out.strip()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    g = torch.Generator().manual_seed(0)
    emb = {m: F.normalize(torch.randn(8, 16, generator=g), dim=-1) for m in ("skeleton", "pointcloud", "imu", "text")}
    mask = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    single, _ = DeSPITELoss()(emb, mask)
    assert outs[0] == pytest.approx(single.item(), rel=1e-5) and outs[1] == pytest.approx(single.item(), rel=1e-5)
