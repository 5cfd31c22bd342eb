"""Point operations in pure PyTorch (no compiled extension), exportable to ONNX.

Semantics follow PointNet++'s CUDA ops, which PST-Transformer uses:
- farthest point sampling starts at index 0 and picks the point farthest from the chosen set;
- ball query returns, per query, the first ``nsample`` point indices (in index order) within
  ``radius``; when fewer are found the rest repeat the first one found; when none is found, 0.
Shapes are static in the number of samples (unrolled loops), dynamic in the batch.
"""
from __future__ import annotations

import torch


def farthest_point_sample(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, k) int64 of ``k`` points chosen by farthest point sampling from xyz (B, N, 3)."""
    b, n, _ = xyz.shape
    dist = torch.full((b, n), 1e10, dtype=xyz.dtype, device=xyz.device)     # (B, N)
    idx = torch.zeros(b, dtype=torch.long, device=xyz.device)
    chosen = []
    for _ in range(k):  # k is small (8 anchors per frame for PST's stride 32): unrolled on export
        chosen.append(idx)
        centre = torch.gather(xyz, 1, idx.view(b, 1, 1).expand(b, 1, 3))   # (B, 1, 3)
        d = ((xyz - centre) ** 2).sum(-1)                                   # (B, N)
        dist = torch.minimum(dist, d)
        idx = dist.argmax(dim=1)
    return torch.stack(chosen, dim=1)


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (B, N, C) gathered at idx (B, ...) -> (B, ..., C)."""
    b, n, c = points.shape
    flat = idx.reshape(b, -1)                                               # (B, M)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(b, flat.shape[1], c))
    return out.reshape(*idx.shape, c)


def ball_query(radius: float, nsample: int, xyz: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Indices (B, M, nsample) of the first ``nsample`` points of xyz (B, N, 3) within ``radius``
    of each centre (B, M, 3), padded with the first hit (PointNet++ semantics)."""
    n = xyz.shape[1]
    d2 = ((centres.unsqueeze(2) - xyz.unsqueeze(1)) ** 2).sum(-1)           # (B, M, N)
    order = torch.arange(n, device=xyz.device).view(1, 1, n).expand_as(d2)
    # Points inside the ball keep their index as sort key; the rest sort after every hit.
    key = torch.where(d2 < radius * radius, order, torch.full_like(order, n))
    k = min(nsample, n)
    first = torch.topk(key, k, dim=-1, largest=False, sorted=True).values   # (B, M, k) ascending
    if k < nsample:
        first = torch.cat([first, first[..., :1].expand(*first.shape[:-1], nsample - k)], dim=-1)
    head = first[..., :1]
    head = torch.where(head >= n, torch.zeros_like(head), head)             # no hit at all: index 0
    return torch.where(first >= n, head.expand_as(first), first)
