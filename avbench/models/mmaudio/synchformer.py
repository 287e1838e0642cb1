"""Synchformer's visual encoder, the audio-visual sync condition of MMAudio, ported for inference.

MMAudio keeps only the video half of Synchformer (Iashin et al. 2024): a MotionFormer ViT-B/16 with
divided space-time attention over 2×16×16 tubelets of 16-frame, 224² segments, followed by a one-layer
transformer that pools each tubelet-frame's patches into one vector through a CLS token. A segment of 16
frames becomes 8 vectors of 768; MMAudio cuts 25 fps video into segments of 16 frames every 8 frames
(`encode_sync_frames`) and feeds all segments' vectors in order.

Parameter names and shapes are those of the original `Synchformer` module, so the released
`synchformer_state_dict.pth` (which also holds the audio branch and the sync head; only the
`vfeat_extractor.*` entries are used) loads strictly. The forward pass is written for inference: the
spatial pooling layer is evaluated for its CLS row only, since nothing else of that layer is used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import CheckpointError, ModelConfigError, SampleError
from avbench.models.state_dict import clean_state_dict, load_strict, safe_load

__all__ = [
    "SYNC_FPS",
    "Synchformer",
    "SynchformerConfig",
    "encode_sync_frames",
    "load_synchformer",
    "num_sync_features",
]

# MMAudio samples the sync frames at 25 fps and 224² (short side resized bicubic, centre crop).
SYNC_FPS = 25.0

# The prefix every used entry of the released file carries (the original's attribute name).
_PREFIX = "vfeat_extractor."


@dataclass(frozen=True)
class SynchformerConfig:
    """The visual encoder's shape. Defaults are the released model (Motionformer `divided_224_16x4`
    as MMAudio patches it: separate space/time position embeddings, divided attention, spatial
    aggregation by a transformer layer, no temporal aggregation, no global segment token)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: int = 4
    qkv_bias: bool = True
    patch_size: int = 16
    tubelet_frames: int = 2  # frames per 3-D patch (Motionformer's PATCH_SIZE_TEMP)
    image_size: int = 224
    segment_frames: int = 16  # frames per segment; segment_frames / tubelet_frames vectors come out
    segment_step: int = 8  # frames between segment starts when cutting a clip
    norm_eps: float = 1e-6
    mean: float = 0.5  # per-channel input normalisation applied to frames in [0, 1]
    std: float = 0.5

    def __post_init__(self):
        problems = []
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.segment_frames % self.tubelet_frames:
            problems.append(f"segment_frames {self.segment_frames} is not a multiple of tubelet_frames "
                            f"{self.tubelet_frames}")
        if min(self.depth, self.segment_step, self.segment_frames) < 1:
            problems.append("depth, segment_frames and segment_step must be ≥ 1")
        if problems:
            raise ModelConfigError("SynchformerConfig: " + "; ".join(problems))

    @classmethod
    def tiny(cls) -> SynchformerConfig:
        """Test-only shape (the parity fixture's): 32² frames, 8² patches, width 32, depth 2."""
        return cls(embed_dim=32, depth=2, num_heads=4, patch_size=8, image_size=32)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def frames_out(self) -> int:
        """Vectors per segment (one per tubelet step)."""
        return self.segment_frames // self.tubelet_frames

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def num_sync_features(num_frames: int, config: SynchformerConfig | None = None) -> int:
    """Length of `encode_sync_frames`' output for a clip of `num_frames` frames (0 if too short)."""
    c = config or SynchformerConfig()
    if num_frames < c.segment_frames:
        return 0
    return ((num_frames - c.segment_frames) // c.segment_step + 1) * c.frames_out


class _Patch2d(nn.Module):
    # Never run: the original keeps this 2-D patch embedding in its state dict (it only sized the
    # position table), so it stays here for strict loading.
    def __init__(self, c: SynchformerConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, c.embed_dim, c.patch_size, stride=c.patch_size)


class _Patch3d(nn.Module):
    def __init__(self, c: SynchformerConfig):
        super().__init__()
        k = (c.tubelet_frames, c.patch_size, c.patch_size)
        self.proj = nn.Conv3d(3, c.embed_dim, k, stride=k)

    def forward(self, x):  # [N, 3, T, H, W] -> [N, t*h*w, D], tokens frame-major
        return self.proj(x).flatten(2).transpose(1, 2)


class _DividedAttention(nn.Module):
    """Self-attention restricted to one axis of the (frame, patch) token grid.

    The CLS token (position 0) attends to every token; every other token attends to the CLS token
    plus the tokens sharing its patch position ("time") or its frame ("space")."""

    def __init__(self, c: SynchformerConfig):
        super().__init__()
        self.heads = c.num_heads
        self.qkv = nn.Linear(c.embed_dim, 3 * c.embed_dim, bias=c.qkv_bias)
        self.proj = nn.Linear(c.embed_dim, c.embed_dim)

    def forward(self, x: torch.Tensor, frames: int, axis: str) -> torch.Tensor:
        n, length, dim = x.shape
        patches = (length - 1) // frames
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # [n, h, 1, dh]

        def grid(t):  # [n, h, 1+F*P, dh] -> [n, h, groups, members, dh]
            g = t[:, :, 1:].unflatten(2, (frames, patches))
            return g.transpose(2, 3) if axis == "time" else g

        qg, kg, vg = grid(q), grid(k), grid(v)
        groups = qg.shape[2]
        cls_k = k[:, :, :1].unsqueeze(2).expand(-1, -1, groups, -1, -1)
        cls_v = v[:, :, :1].unsqueeze(2).expand(-1, -1, groups, -1, -1)
        out = F.scaled_dot_product_attention(qg, torch.cat((cls_k, kg), 3), torch.cat((cls_v, vg), 3))
        if axis == "time":
            out = out.transpose(2, 3)
        out = torch.cat((cls_out, out.flatten(2, 3)), 2)  # [n, h, L, dh]
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class _Mlp(nn.Module):
    def __init__(self, c: SynchformerConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.embed_dim, c.mlp_ratio * c.embed_dim)
        self.fc2 = nn.Linear(c.mlp_ratio * c.embed_dim, c.embed_dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _SpaceTimeBlock(nn.Module):
    # Attribute names follow the original (norm3 guards the time attention, norm1 the space one).
    def __init__(self, c: SynchformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.attn = _DividedAttention(c)
        self.timeattn = _DividedAttention(c)
        self.norm2 = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.mlp = _Mlp(c)
        self.norm3 = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)

    def forward(self, x, frames: int):
        x = x + self.timeattn(self.norm3(x), frames, "time")
        x = x + self.attn(self.norm1(x), frames, "space")
        return x + self.mlp(self.norm2(x))


class _ClsPool(nn.Module):
    """A pre-norm transformer encoder layer over [CLS, tokens] of which only the CLS row is kept
    (names follow torch's TransformerEncoderLayer, which the original used)."""

    def __init__(self, c: SynchformerConfig):
        super().__init__()
        d = c.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.self_attn = nn.MultiheadAttention(d, c.num_heads, batch_first=True)
        self.linear1 = nn.Linear(d, c.mlp_ratio * d)
        self.linear2 = nn.Linear(c.mlp_ratio * d, d)
        self.norm1 = nn.LayerNorm(d, eps=c.norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=c.norm_eps)

    def forward(self, x):  # [N, P, D] -> [N, D]
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), 1)
        y = self.norm1(x)
        cls = x[:, :1] + self.self_attn(y[:, :1], y, y, need_weights=False)[0]
        cls = cls + self.linear2(F.gelu(self.linear1(self.norm2(cls))))
        return cls[:, 0]


class _MotionFormer(nn.Module):
    def __init__(self, c: SynchformerConfig):
        super().__init__()
        self.config = c
        patches = c.grid * c.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + patches, c.embed_dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, c.frames_out, c.embed_dim))
        self.patch_embed = _Patch2d(c)
        self.patch_embed_3d = _Patch3d(c)
        self.blocks = nn.ModuleList(_SpaceTimeBlock(c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.spatial_attn_agg = _ClsPool(c)

    def forward(self, x):  # [N, 3, T, H, W] -> [N, t, D]
        c = self.config
        n, t = x.shape[0], c.frames_out
        x = self.patch_embed_3d(x)
        # every patch gets its spatial position plus its frame's temporal embedding
        pos = (self.pos_embed[:, 1:].unsqueeze(1) + self.temp_embed.unsqueeze(2)).flatten(1, 2)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        x = torch.cat((cls, x + pos), 1)
        for block in self.blocks:
            x = block(x, t)
        x = self.norm(x[:, 1:])  # the ViT's own CLS token is not used downstream
        x = self.spatial_attn_agg(x.reshape(n * t, -1, c.embed_dim))
        return x.view(n, t, c.embed_dim)


class Synchformer(nn.Module):
    """`forward(segments[B, S, T, 3, H, W]) -> [B, S, T / tubelet_frames, D]` for normalised frames
    (T = segment_frames, H = W = image_size; the released model gives [B, S, 8, 768])."""

    def __init__(self, config: SynchformerConfig | None = None):
        super().__init__()
        self.config = config or SynchformerConfig()
        self.vfeat_extractor = _MotionFormer(self.config)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        if next(self.parameters()).is_meta:
            return
        for name, p in self.named_parameters():
            if name.endswith(("cls_token", "pos_embed", "temp_embed")):
                nn.init.trunc_normal_(p, std=0.02)

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        c = self.config
        want = (c.segment_frames, 3, c.image_size, c.image_size)
        if segments.ndim != 6 or tuple(segments.shape[2:]) != want:
            raise SampleError(f"Synchformer input has shape {tuple(segments.shape)}; expected "
                              f"[batch, segments, {', '.join(map(str, want))}]")
        b, s = segments.shape[:2]
        x = segments.flatten(0, 1).transpose(1, 2)  # [B*S, 3, T, H, W]
        return self.vfeat_extractor(x).unflatten(0, (b, s))


def encode_sync_frames(model: Synchformer, frames: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """MMAudio's sync condition for clips: `frames[B, T, 3, H, W]` (25 fps, 224² for the released
    model; float in [0, 1], or uint8 0-255) -> `[B, S * T', D]` on the model's device, with
    S = (T - 16) // 8 + 1 segments of 16 frames every 8 frames; frames after the last whole segment
    are not used. The (x - 0.5) / 0.5 normalisation is applied here. `batch_size` caps the segments
    per forward pass (default: all at once)."""
    c = model.config
    if frames.ndim != 5 or tuple(frames.shape[2:]) != (3, c.image_size, c.image_size):
        raise SampleError(f"sync frames have shape {tuple(frames.shape)}; expected "
                          f"[batch, frames, 3, {c.image_size}, {c.image_size}] in [0, 1]")
    b, t = frames.shape[:2]
    if t < c.segment_frames:
        raise SampleError(f"sync frames: {t} frames is fewer than one segment ({c.segment_frames} frames, "
                          f"{c.segment_frames / SYNC_FPS:.2f} s at {SYNC_FPS:g} fps); use a longer clip")
    param = next(model.parameters())
    x = frames.to(param.device)
    x = x.to(param.dtype) / 255 if not x.is_floating_point() else x.to(param.dtype)
    x = (x - c.mean) / c.std
    # [B, S, 3, H, W, T] -> [B*S, T, 3, H, W]
    segments = x.unfold(1, c.segment_frames, c.segment_step).permute(0, 1, 5, 2, 3, 4).flatten(0, 1)
    step = batch_size if batch_size and batch_size > 0 else segments.shape[0]
    with torch.no_grad():
        out = [model(segments[i:i + step].unsqueeze(1)).squeeze(1) for i in range(0, segments.shape[0], step)]
    return torch.cat(out).view(b, -1, c.embed_dim)


def load_synchformer(path: str | Path, config: SynchformerConfig | None = None,
                     device: str | torch.device = "cpu") -> Synchformer:
    """The encoder from a Synchformer state dict (the released `synchformer_state_dict.pth`), in eval
    mode. Only `vfeat_extractor.*` entries are read (the file also holds the audio branch); those must
    match key for key and shape for shape, or one CheckpointError line names the file."""
    sd = {k: v for k, v in clean_state_dict(safe_load(path)).items() if k.startswith(_PREFIX)}
    if not sd:
        raise CheckpointError(f"{path}: no '{_PREFIX}*' entries; not a Synchformer state dict "
                              "(expected MMAudio's synchformer_state_dict.pth)")
    with torch.device("meta"):
        model = Synchformer(config)
    load_strict(model, sd, path, "a state dict of the Synchformer visual encoder",
                "wrong file or wrong SynchformerConfig")
    return model.to(device=device, dtype=torch.float32).eval()
