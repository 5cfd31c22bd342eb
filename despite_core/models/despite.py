"""The modality-keyed DeSPITE model: one encoder per modality of the preset, ``forward(dict) -> dict``
of L2-normalised embeddings in the shared space (ImageBind-style)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import torch
import torch.nn as nn

from despite_core.models.imu import ImuEncoder, ImuEncoderConfig
from despite_core.models.pst import PSTConfig, PSTTransformer
from despite_core.models.skeleton import SkeletonEncoder, SkeletonEncoderConfig
from despite_core.models.text import TextEncoder, TextEncoderConfig
from despite_core.presets import preset_modalities


@dataclass(frozen=True)
class DeSPITEConfig:
    preset: str = "DeSPITE"
    embed_dim: int = 512
    pointcloud: PSTConfig = field(default_factory=PSTConfig)
    imu: ImuEncoderConfig = field(default_factory=ImuEncoderConfig)
    skeleton: SkeletonEncoderConfig = field(default_factory=SkeletonEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)

    @property
    def modalities(self) -> tuple[str, ...]:
        return preset_modalities(self.preset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeSPITEConfig":
        sub = {"pointcloud": PSTConfig, "imu": ImuEncoderConfig, "skeleton": SkeletonEncoderConfig,
               "text": TextEncoderConfig}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in sub and isinstance(v, dict):
                if k == "pointcloud" and "temporal_padding" in v:
                    v = dict(v, temporal_padding=tuple(v["temporal_padding"]))
                kw[k] = sub[k](**v)
            else:
                kw[k] = v
        return cls(**kw)


def _with_embed_dim(cfg, dim: int):
    assert is_dataclass(cfg)
    return type(cfg)(**{**asdict(cfg), "embed_dim": dim}) if getattr(cfg, "embed_dim", dim) != dim else cfg


class DeSPITEModel(nn.Module):
    """Encoders for the preset's modalities.

    Inputs: ``pointcloud`` (B, 24, 256, 3), ``imu`` (B, 24, C), ``skeleton`` (B, 24, 24, 3) tensors,
    ``text`` a list of B strings. ``forward`` returns {modality: (B, embed_dim) normalised};
    ``encode`` also returns each encoder's pooled features (where HAR heads sit).
    """

    def __init__(self, config: DeSPITEConfig = DeSPITEConfig()) -> None:
        super().__init__()
        self.config = config
        builders = {
            "pointcloud": lambda: PSTTransformer(_with_embed_dim(config.pointcloud, config.embed_dim)),
            "imu": lambda: ImuEncoder(_with_embed_dim(config.imu, config.embed_dim)),
            "skeleton": lambda: SkeletonEncoder(_with_embed_dim(config.skeleton, config.embed_dim)),
            "text": lambda: TextEncoder(_with_embed_dim(config.text, config.embed_dim)),
        }
        self.encoders = nn.ModuleDict({m: builders[m]() for m in config.modalities})

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.encoders.keys())

    def encode(self, modality: str, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if modality not in self.encoders:
            raise KeyError(f"model (preset {self.config.preset}) has no {modality!r} encoder; it has {list(self.encoders)}")
        return self.encoders[modality](x)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {m: self.encode(m, x)[1] for m, x in batch.items() if m in self.encoders}
