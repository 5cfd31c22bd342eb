"""HAR head pieces shared by training (train.har), export and the weight recovery from a bundle
(train.from_bundle): the feature size each encoder hands its head, the text-free preset holding one
encoder, and the head itself."""
from __future__ import annotations

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
