"""Skeleton encoder in the style of ACTOR / MotionCLIP: per-frame joints embedded linearly,
sinusoidal positions, a learned query token prepended, an 8-layer transformer encoder; the query
token's output is the embedding source."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from despite_core.models.common import reset_transformer_layers, sinusoidal_positions


@dataclass(frozen=True)
class SkeletonEncoderConfig:
    joints: int = 24
    latent: int = 512
    layers: int = 8
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    max_frames: int = 256
    embed_dim: int = 512


class SkeletonEncoder(nn.Module):
    """(B, T, J, 3) joints (metres) -> features (B, latent), embedding (B, embed_dim) normalised."""

    def __init__(self, config: SkeletonEncoderConfig = SkeletonEncoderConfig()) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.joints * 3, config.latent)
        self.query = nn.Parameter(torch.randn(1, 1, config.latent) * 0.02)
        self.register_buffer("positions", sinusoidal_positions(config.max_frames + 1, config.latent), persistent=False)
        layer = nn.TransformerEncoderLayer(config.latent, config.heads, config.ff, config.dropout,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        reset_transformer_layers(self.encoder)
        self.proj = nn.Identity() if config.latent == config.embed_dim else nn.Linear(config.latent, config.embed_dim)

    def forward(self, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = joints.shape[:2]
        if joints.shape[2:] != (self.config.joints, 3):
            raise ValueError(f"skeleton input must be (B, T, {self.config.joints}, 3), got {tuple(joints.shape)}")
        if t > self.config.max_frames:
            raise ValueError(f"window of {t} frames exceeds max_frames={self.config.max_frames}")
        x = self.embed(joints.reshape(b, t, -1))                              # (B, T, latent)
        x = torch.cat([self.query.expand(b, -1, -1), x], dim=1)               # (B, 1 + T, latent)
        x = x + self.positions[: t + 1]
        features = self.encoder(x)[:, 0]                                      # (B, latent)
        return features, F.normalize(self.proj(features), dim=-1)
