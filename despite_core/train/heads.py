"""HAR head pieces shared by training (train.har), export and the weight recovery from a bundle
(train.from_bundle): the feature size each encoder hands its head, the text-free preset holding one
encoder, and the head itself."""
from __future__ import annotations

import torch
import torch.nn as nn

FEATURE_DIM = {"pointcloud": lambda c: c.pointcloud.dim, "imu": lambda c: c.imu.hidden, "skeleton": lambda c: c.skeleton.latent}
PRESET_WITH = {"pointcloud": "DePIE", "imu": "DePIE", "skeleton": "DeSPIE"}


def make_head(kind: str, feature_dim: int, num_classes: int) -> nn.Module:
    """``linear``, or the reference's small ``mlp``: LayerNorm, Linear(F, 256), GELU, Dropout 0.1, Linear(256, C)."""
    if kind == "linear":
        return nn.Linear(feature_dim, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, 256), nn.GELU(), nn.Dropout(0.1),
                             nn.Linear(256, num_classes))
    raise ValueError(f"head must be linear or mlp, got {kind!r}")


class MotionHead(nn.Module):
    """A head on the encoder's features and the window's body motion (despite_core.data.body_motion):
    the features layer-normalised, the motion standardised per number by the training windows'
    statistics (buffers, :meth:`set_motion_stats`), both concatenated into ``make_head(kind)``."""

    def __init__(self, kind: str, feature_dim: int, motion_dim: int, num_classes: int) -> None:
        super().__init__()
        self.feature_norm = nn.LayerNorm(feature_dim)
        self.register_buffer("motion_mean", torch.zeros(motion_dim))
        self.register_buffer("motion_std", torch.ones(motion_dim))
        self.head = make_head(kind, feature_dim + motion_dim, num_classes)

    def set_motion_stats(self, mean, std) -> None:
        """Per-number mean and standard deviation of the training windows' body motion."""
        self.motion_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.motion_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def forward(self, features: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        m = (motion - self.motion_mean) / self.motion_std
        return self.head(torch.cat([self.feature_norm(features), m], 1))
