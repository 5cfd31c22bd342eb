"""PST-Transformer point-cloud sequence encoder (hehefan/PST-Transformer, as DeSPITE configures
it), in pure PyTorch: farthest point sampling, ball query and grouping from despite_core.ops, so
it exports to ONNX without a compiled extension.

Forward, for a window (B, T=24, N=256, 3) with the reference settings:
1. Tube embedding (point 4D convolution): frames are replicate-padded [1, 0] in time; for each
   temporal window of 3 frames (stride 2 -> L' = 12 windows) the middle frame's FPS picks
   n = N / 32 = 8 anchors; in each of the 3 frames, the first 32 points within 0.3 m of every
   anchor are grouped; (dx, dy, dz, dt) -> Linear(4, 80, no bias) -> max over neighbours -> max
   over the 3 frames. Tokens: (B, L' * n = 96, 80) at the anchor positions.
2. Five PST layers: pre-norm multi-head attention over all tokens whose output adds a learned
   projection of the attention-weighted displacement sum_j a_ij (xyz_j - xyz_i); then a pre-norm
   feed-forward (80 -> 512 -> 80, GELU). No positional embedding (as the reference).
3. Max over tokens -> ``features`` (B, 80), where HAR heads sit; SimCLR projection head
   80 -> 80 -> 512 -> L2-normalised ``embedding``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from despite_core.models.common import ProjectionHead
from despite_core.ops import ball_query, farthest_point_sample, gather_points


@dataclass(frozen=True)
class PSTConfig:
    frames: int = 24
    points: int = 256
    radius: float = 0.3
    nsamples: int = 32
    spatial_stride: int = 32
    temporal_kernel: int = 3
    temporal_stride: int = 2
    temporal_padding: tuple[int, int] = (1, 0)   # replicate-padded frames before / after
    dim: int = 80
    depth: int = 5
    heads: int = 2
    dim_head: int = 40
    mlp_dim: int = 512
    head_hidden: int = 80
    embed_dim: int = 512

    @property
    def anchors(self) -> int:
        """Anchors per frame (derived: points / spatial stride)."""
        return self.points // self.spatial_stride

    @property
    def windows(self) -> int:
        """Temporal windows L' after the tube embedding."""
        padded = self.frames + sum(self.temporal_padding)
        return (padded - self.temporal_kernel) // self.temporal_stride + 1

    def __post_init__(self) -> None:
        if self.points % self.spatial_stride:
            raise ValueError(f"points ({self.points}) must be a multiple of spatial_stride ({self.spatial_stride})")
        if self.temporal_kernel % 2 != 1:
            raise ValueError("temporal_kernel must be odd (a middle anchor frame)")
        padded = self.frames + sum(self.temporal_padding)
        if (padded - self.temporal_kernel) % self.temporal_stride:
            raise ValueError(f"{self.frames} frames + padding {self.temporal_padding} do not tile with kernel "
                             f"{self.temporal_kernel} and stride {self.temporal_stride}")


class TubeEmbedding(nn.Module):
    """Point 4D convolution with no input features: (B, T, N, 3) -> anchors (B, L', n, 3), features (B, L', n, dim)."""

    def __init__(self, config: PSTConfig) -> None:
        super().__init__()
        self.config = config
        self.conv_d = nn.Linear(4, config.dim, bias=False)
        half = config.temporal_kernel // 2
        before, _ = config.temporal_padding
        # Padded frame p holds original frame clamp(p - before); window l's middle is p = half + l * stride.
        mids = [half + l * config.temporal_stride for l in range(config.windows)]
        frame_of = [[min(max(m + d - before, 0), config.frames - 1) for m in mids] for d in range(-half, half + 1)]
        self.register_buffer("neighbour_frames", torch.tensor(frame_of, dtype=torch.long), persistent=False)  # (K, L')
        self.offsets = list(range(-half, half + 1))

    def frame_features(self, frame: torch.Tensor, anchors: torch.Tensor, dt: float) -> torch.Tensor:
        """Features of one neighbour frame (M, N, 3) around anchors (M, n, 3) -> (M, n, dim)."""
        idx = ball_query(self.config.radius, self.config.nsamples, frame, anchors)   # (M, n, k)
        disp = gather_points(frame, idx) - anchors.unsqueeze(2)                      # (M, n, k, 3)
        dtc = torch.full_like(disp[..., :1], float(dt))
        return self.conv_d(torch.cat([disp, dtc], dim=-1)).amax(dim=2)               # (M, n, dim)

    def tube(self, frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One tube from its temporal neighbourhood ``frames`` (kernel entries, each (M, N, 3), the middle
        one holding the anchors) -> anchors (M, n, 3), features (M, n, dim).

        The unit a streaming runtime caches per frame: a window's tube l only depends on frames
        2l-1, 2l, 2l+1 (window-relative), except tube 0, whose left neighbour is the replicated
        first frame, so a sliding window recomputes that one.
        """
        mid = frames[len(frames) // 2]
        anchors = gather_points(mid, farthest_point_sample(mid, self.config.anchors))   # (M, n, 3)
        feats = [self.frame_features(f, anchors, dt) for f, dt in zip(frames, self.offsets)]
        return anchors, torch.stack(feats, 0).amax(0)

    def forward(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, n_pts, _ = xyz.shape
        frames = [xyz[:, self.neighbour_frames[k]].reshape(-1, n_pts, 3) for k in range(len(self.offsets))]  # (B*L', N, 3)
        anchors, features = self.tube(frames)
        return (anchors.reshape(b, -1, self.config.anchors, 3),
                features.reshape(b, -1, self.config.anchors, self.config.dim))


class PSTAttention(nn.Module):
    """Pre-norm attention whose output adds a projection of the attention-weighted displacement."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.spatial_op = nn.Linear(3, dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.GELU())
        self.scale = dim_head ** -0.5

    def forward(self, xyz: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, m, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, m, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)       # (B, H, m, m)
        # sum_j a_ij (xyz_j - xyz_i) = (A @ xyz)_i - xyz_i, since each row of A sums to 1.
        disp = attn @ xyz.unsqueeze(1) - xyz.unsqueeze(1)                        # (B, H, m, 3)
        out = attn @ v + self.spatial_op(disp)                                   # (B, H, m, dh)
        out = out.transpose(1, 2).reshape(b, m, self.heads * self.dim_head)
        return x + self.to_out(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class PSTTransformer(nn.Module):
    """(B, T, N, 3) clouds (per-frame centred) -> features (B, dim), embedding (B, embed_dim) normalised."""

    def __init__(self, config: PSTConfig = PSTConfig()) -> None:
        super().__init__()
        self.config = config
        self.tube = TubeEmbedding(config)
        self.layers = nn.ModuleList()
        for _ in range(config.depth):
            self.layers.append(PSTAttention(config.dim, config.heads, config.dim_head))
            self.layers.append(FeedForward(config.dim, config.mlp_dim))
        self.head = ProjectionHead(config.dim, config.head_hidden, config.embed_dim)

    def tokens(self, anchors: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Transformer over the tube tokens, max-pooled: (B, L', n, 3), (B, L', n, dim) -> (B, dim)."""
        b = features.shape[0]
        xyz = anchors.reshape(b, -1, 3)                                          # (B, m, 3)
        x = features.reshape(b, -1, self.config.dim)                             # (B, m, dim)
        for layer in self.layers:
            x = layer(xyz, x) if isinstance(layer, PSTAttention) else layer(x)
        return x.amax(dim=1)

    def from_tubes(self, anchors: torch.Tensor, tubes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-window remainder: (B, L', n, 3) anchors and (B, L', n, dim) tube features ->
        features (B, dim), embedding (B, embed_dim) normalised."""
        features = self.tokens(anchors, tubes)
        return features, F.normalize(self.head(features), dim=-1)

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if points.dim() != 4 or tuple(points.shape[1:]) != (c.frames, c.points, 3):
            raise ValueError(f"point-cloud input must be (B, {c.frames}, {c.points}, 3), got {tuple(points.shape)}")
        return self.from_tubes(*self.tube(points))
