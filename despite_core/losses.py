"""DeSPITE's contrastive objective: symmetric InfoNCE per modality pair, text pairs masked.

Total = alpha * sum over sensors m of L(m, text; windows with text only)
      + beta  * sum over sensor pairs (m, n) of L(m, n)
with alpha = beta = 0.5 and a fixed temperature of 0.1 as in the reference (thkreutz/despite).

Under DistributedDataParallel the embeddings of every rank are gathered (the local slice keeps
its gradient, open_clip's scheme) so that negatives span the global batch; every rank then
computes the same global loss.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

SENSORS = ("skeleton", "pointcloud", "imu")


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0, rank order; the local slice keeps its gradient.

    A no-op without an initialised process group (or with one rank).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between paired L2-normalised embeddings a, b (B, D): row i of a matches row i of b.

    The SUM of the a->b and b->a cross-entropies over the B x B cosine logits / temperature, as
    the reference implementation (CLIP averages them; with Adam the factor 2 is immaterial).
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"info_nce needs two (B, D) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    logits = a @ b.t() / temperature                                      # (B, B)
    target = torch.arange(a.shape[0], device=a.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)


@dataclass(frozen=True)
class LossConfig:
    alpha: float = 0.5           # weight of the sensor <-> text terms
    beta: float = 0.5            # weight of the sensor <-> sensor terms
    temperature: float = 0.1
    learnable_temperature: bool = False


class DeSPITELoss(nn.Module):
    """The two-level loss over whatever modalities a batch holds.

    ``forward(embeddings, text_mask)``: embeddings maps modality -> (B, D) normalised tensors
    (local batch); ``text_mask`` (B,) bool marks windows that have text (others are left out of
    every text term: neither as positives nor as negatives). Returns (total, {pair name: loss}).
    """

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        super().__init__()
        self.config = config
        log_t = torch.tensor(math.log(config.temperature))
        if config.learnable_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def forward(self, embeddings: dict[str, torch.Tensor],
                text_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        unknown = set(embeddings) - set(SENSORS) - {"text"}
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {list(SENSORS) + ['text']}")
        sensors = [m for m in SENSORS if m in embeddings]
        if len(sensors) + ("text" in embeddings) < 2:
            raise ValueError(f"the loss needs at least two modalities, got {sorted(embeddings)}")
        g = {m: gather_with_grad(e) for m, e in embeddings.items()}
        t = self.temperature
        terms: dict[str, torch.Tensor] = {}
        zero = next(iter(g.values())).sum() * 0.0
        total = zero
        if "text" in g:
            if text_mask is None:
                mask = torch.ones(g["text"].shape[0], dtype=torch.bool, device=g["text"].device)
            else:
                mask = gather_with_grad(text_mask.to(torch.bool))
            for m in sensors:
                # Windows without text contribute nothing: an empty selection gives a zero term.
                term = info_nce(g[m][mask], g["text"][mask], t) if int(mask.sum()) > 1 else zero
                terms[f"{m}-text"] = term
                total = total + self.config.alpha * term
        for m, n in itertools.combinations(sensors, 2):
            term = info_nce(g[m], g[n], t)
            terms[f"{m}-{n}"] = term
            total = total + self.config.beta * term
        return total, terms
