"""IMU encoder: a 2-layer LSTM over the window, the last time step's output as the embedding
source (DeSPITE's reference). The input width comes from the store's / bundle's IMU layout
(default: LIPD's four sites x (rotation matrix 9 + acceleration 3) = 48), so other layouts work
without code changes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from despite_core.data.imu_layout import ImuLayout


@dataclass(frozen=True)
class ImuEncoderConfig:
    input_dim: int = 48          # sites x channels per site, from the layout
    hidden: int = 512
    layers: int = 2
    embed_dim: int = 512
    input_norm: bool = False     # standardise each input channel by the training data's statistics (in the graph)

    @classmethod
    def for_layout(cls, layout: ImuLayout, **kw) -> "ImuEncoderConfig":
        return cls(input_dim=layout.flat_width, **kw)


class ImuEncoder(nn.Module):
    """(B, T, C) IMU window -> features (B, hidden) = the LSTM's last step, embedding (B, embed_dim) normalised."""

    def __init__(self, config: ImuEncoderConfig = ImuEncoderConfig()) -> None:
        super().__init__()
        self.config = config
        if config.input_norm:   # identity until set_input_stats; saved with the weights, exported in the ONNX graph
            self.register_buffer("input_mean", torch.zeros(config.input_dim))
            self.register_buffer("input_std", torch.ones(config.input_dim))
        self.lstm = nn.LSTM(config.input_dim, config.hidden, num_layers=config.layers, batch_first=True)
        self.proj = nn.Identity() if config.hidden == config.embed_dim else nn.Linear(config.hidden, config.embed_dim)

    def forward(self, imu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if imu.dim() == 4:                      # (B, T, sites, width) -> (B, T, C)
            imu = imu.flatten(2)
        if imu.shape[-1] != self.config.input_dim:
            raise ValueError(f"IMU input has {imu.shape[-1]} channels, the encoder expects {self.config.input_dim}")
        if self.config.input_norm:
            imu = (imu - self.input_mean) / self.input_std
        out, _ = self.lstm(imu)                 # (B, T, hidden)
        features = out[:, -1]                   # (B, hidden)
        return features, F.normalize(self.proj(features), dim=-1)

    def set_input_stats(self, mean, std) -> None:
        """Per-channel mean and standard deviation (C,) of the training inputs (channels with a spread
        under 1e-3 are left unscaled: a constant channel carries nothing to amplify)."""
        if not self.config.input_norm:
            raise ValueError("this IMU encoder was built without input_norm")
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != (self.config.input_dim,) or std.shape != mean.shape:
            raise ValueError(f"IMU input statistics must have {self.config.input_dim} channels, got {tuple(mean.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("IMU input statistics must be finite")
        self.input_mean.copy_(mean)
        self.input_std.copy_(torch.where(std < 1e-3, torch.ones_like(std), std))
