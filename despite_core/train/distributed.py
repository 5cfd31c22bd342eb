"""torchrun / DistributedDataParallel set-up: gloo on CPU, NCCL on GPU. Single process when not
launched by torchrun (no WORLD_SIZE)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked but no CUDA device is available")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def ranks_in_sync(model: torch.nn.Module, info: DistInfo) -> bool:
    """True when every rank holds the same parameters (a float64 checksum compared across ranks)."""
    if not info.enabled:
        return True
    with torch.no_grad():
        total = sum(float(p.double().sum()) + float(p.double().abs().sum()) for p in model.parameters())
    t = torch.tensor([total], dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    parts = [torch.zeros_like(t) for _ in range(info.world_size)]
    dist.all_gather(parts, t)
    return all(abs(float(x) - total) <= 1e-9 * max(1.0, abs(total)) for x in parts)
