"""Pieces shared by the encoders."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class ProjectionHead(nn.Module):
    """SimCLR-style projection from an encoder's features to the joint space: Linear, ReLU, Linear."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The transformer's fixed sinusoidal position table (length, dim)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return table


def reset_transformer_layers(encoder: nn.TransformerEncoder) -> None:
    """nn.TransformerEncoder deep-copies one layer: give every layer its own initialisation."""
    for layer in encoder.layers:
        for m in layer.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        layer.self_attn._reset_parameters()
