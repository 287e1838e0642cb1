"""The two CLIP towers MMAudio conditions on (Apple's DFN5B ViT-H/14), ported for inference.

MMAudio loads `apple/DFN5B-CLIP-ViT-H-14-384` through open_clip and uses it twice: the image tower
embeds 384² frames sampled at 8 fps (one L2-normalised 1024-d vector per frame), and a patched text
tower returns the hidden state of every one of the 77 token positions after the final LayerNorm, each
L2-normalised (no pooling, no text projection). open_clip cannot be installed beside the torch this
project targets (its torchvision dependency), so the towers are written here with open_clip's parameter
names and shapes, and its `open_clip_pytorch_model.bin` loads strictly.

Facts about the checkpoint (from its `open_clip_config.json`, identical to open_clip's built-in
`ViT-H-14-378-quickgelu`): QuickGELU activations, class-token pooling with LayerNorm before the pool,
no attentional pooler, no LayerScale, LayerNorm eps 1e-5, causal text mask, learned position
embeddings. The hub repository was renamed `...-378` and its config says image size 378; MMAudio feeds
384² frames. A stride-14 patch convolution gives the same 27×27 grid for both (the last 6 pixel rows and
columns of a 384² frame are never seen), so the weights, the grid and the outputs are the same.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avbench import weights
from avbench.errors import ModelConfigError, SampleError
from avbench.models.state_dict import clean_state_dict, load_strict, safe_load

__all__ = [
    "CLIP",
    "CLIP_HUB_ID",
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIP_WEIGHTS",
    "CLIPConfig",
    "clip_weights",
    "load_clip",
]

# The weights' registry name (avbench.weights) and where they live on the hub.
CLIP_WEIGHTS = "clip-dfn5b-vit-h-14-384"
CLIP_HUB_ID = "apple/DFN5B-CLIP-ViT-H-14-384"
_HUB_IDS = (CLIP_HUB_ID, "apple/DFN5B-CLIP-ViT-H-14-378")  # the repository's old and current names
_HUB_FILE = "open_clip_pytorch_model.bin"

# OpenAI CLIP's image statistics: the DFN5B config's preprocess_cfg and MMAudio's Normalize use them.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPConfig:
    """Sizes of both towers. The defaults are DFN5B ViT-H/14 as MMAudio runs it."""

    embed_dim: int = 1024
    image_size: int = 384  # what MMAudio feeds; the grid is image_size // patch_size (27 for 378 and 384)
    patch_size: int = 14
    vision_width: int = 1280
    vision_layers: int = 32
    vision_head_width: int = 80  # heads = width / head width (16), as open_clip derives them
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 1024
    text_heads: int = 16
    text_layers: int = 24
    mlp_ratio: float = 4.0
    quick_gelu: bool = True
    ln_eps: float = 1e-5

    def __post_init__(self):
        if self.vision_width % self.vision_head_width:
            raise ModelConfigError(f"CLIPConfig: vision_width {self.vision_width} is not a multiple of "
                                   f"vision_head_width {self.vision_head_width}")
        if self.text_width % self.text_heads:
            raise ModelConfigError(f"CLIPConfig: text_width {self.text_width} is not divisible by "
                                   f"text_heads {self.text_heads}")
        if self.image_size < self.patch_size:
            raise ModelConfigError(f"CLIPConfig: image_size {self.image_size} is below patch_size {self.patch_size}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def vision_heads(self) -> int:
        return self.vision_width // self.vision_head_width

    @classmethod
    def tiny(cls) -> CLIPConfig:
        """Test-only sizes; the parity fixture (tests/fixtures/mmaudio/clip/tiny.npz) was made with them."""
        return cls(embed_dim=16, image_size=28, patch_size=7, vision_width=32, vision_layers=2,
                   vision_head_width=16, context_length=16, vocab_size=100, text_width=24, text_heads=2,
                   text_layers=2)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _SelfAttention(nn.Module):
    """Multi-head self-attention holding its weights the way nn.MultiheadAttention names them
    (`in_proj_weight`, `in_proj_bias`, `out_proj`), which is how the checkpoint stores them."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        # [B, N, 3, H, Dh] -> three contiguous [B, H, N, Dh], the layout SDPA's fused kernels take
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class _MLP(nn.Module):
    def __init__(self, width: int, hidden: int, quick_gelu: bool):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.act = _QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class _Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1 x), then + mlp(ln_2 x)."""

    def __init__(self, width: int, heads: int, cfg: CLIPConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=cfg.ln_eps)
        self.attn = _SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=cfg.ln_eps)
        self.mlp = _MLP(width, int(width * cfg.mlp_ratio), cfg.quick_gelu)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, cfg: CLIPConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(_Block(width, heads, cfg) for _ in range(layers))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, causal)
        return x


class _VisionTower(nn.Module):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        w = cfg.vision_width
        scale = w ** -0.5
        self.patch_size = cfg.patch_size
        self.grid = cfg.grid
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid ** 2 + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=cfg.ln_eps)
        self.transformer = _Transformer(w, cfg.vision_layers, cfg.vision_heads, cfg)
        self.ln_post = nn.LayerNorm(w, eps=cfg.ln_eps)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.conv1(images).flatten(2).transpose(1, 2)  # [N, grid², width]
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], dim=1) + self.positional_embedding.to(patches.dtype)
        x = self.transformer(self.ln_pre(x))
        # LayerNorm on every token, then the class token (the checkpoint's pool order)
        return self.ln_post(x)[:, 0] @ self.proj


class CLIP(nn.Module):
    """Image and text towers with open_clip's state-dict layout (`visual.*` for the image tower, the
    text tower's parts at the top level, `logit_scale`)."""

    def __init__(self, config: CLIPConfig | None = None):
        super().__init__()
        cfg = self.config = config or CLIPConfig()
        self.visual = _VisionTower(cfg)
        self.transformer = _Transformer(cfg.text_width, cfg.text_layers, cfg.text_heads, cfg)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(cfg.context_length, cfg.text_width))
        self.ln_final = nn.LayerNorm(cfg.text_width, eps=cfg.ln_eps)
        self.text_projection = nn.Parameter(cfg.text_width ** -0.5 * torch.randn(cfg.text_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.659260036932778))  # log(1 / 0.07), open_clip's init

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1], [..., 3, H, W] -> the normalised input `encode_image` expects."""
        mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
        std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
        return (images - mean) / std

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """[N, 3, H, W] normalised frames (see `preprocess`) -> [N, embed_dim]; L2-normalised by default,
        as MMAudio calls it. H and W must give the configured patch grid."""
        cfg = self.config
        if images.ndim != 4 or images.shape[1] != 3:
            raise SampleError(f"CLIP images: expected [N, 3, H, W], got {list(images.shape)}")
        h, w = images.shape[-2:]
        if h // cfg.patch_size != cfg.grid or w // cfg.patch_size != cfg.grid:
            raise SampleError(f"CLIP images: {h}x{w} gives a {h // cfg.patch_size}x{w // cfg.patch_size} patch grid, "
                              f"the model has {cfg.grid}x{cfg.grid}; resize frames to {cfg.image_size}x{cfg.image_size}")
        dtype = self.visual.conv1.weight.dtype
        features = self.visual(images.to(dtype))
        return F.normalize(features, dim=-1) if normalize else features

    def _text_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if tokens.ndim != 2 or tokens.shape[1] != cfg.context_length:
            raise SampleError(f"CLIP tokens: expected [B, {cfg.context_length}], got {list(tokens.shape)}; "
                              "tokenize with avbench.models.mmaudio.tokenizer.CLIPTokenizer")
        x = self.token_embedding(tokens) + self.positional_embedding
        return self.ln_final(self.transformer(x, causal=True))

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """MMAudio's text condition: [B, context] token ids -> [B, context, text_width], the hidden state
        of every position after ln_final, L2-normalised per token by default (padding positions
        included: the causal mask means they see the prompt, and MMAudio uses all 77)."""
        x = self._text_hidden(tokens)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text_pooled(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Standard CLIP text embedding (the end-of-text position, projected): [B, embed_dim]. The
        end-of-text id is the largest in the vocabulary, so its position is the row's argmax."""
        x = self._text_hidden(tokens)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ self.text_projection
        return F.normalize(x, dim=-1) if normalize else x


def load_clip(path: str | Path, config: CLIPConfig | None = None,
              device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CLIP:
    """CLIP from an open_clip state dict (the released `open_clip_pytorch_model.bin`, or any file
    `torch.save`d with the same keys), in eval mode. Keys and shapes must match exactly, or one
    CheckpointError line names the file. Checksums are the caller's business (`avbench.weights.resolve`)."""
    cfg = config or CLIPConfig()
    sd = clean_state_dict(safe_load(path))
    with torch.device("meta"):
        model = CLIP(cfg)
    load_strict(model, sd, path, "a state dict of the CLIP towers",
                f"expected open_clip_pytorch_model.bin of {CLIP_HUB_ID}, or pass the matching CLIPConfig")
    return model.to(device=device, dtype=dtype).eval()


def _hub_cached() -> Path | None:
    """The checkpoint in the user's Hugging Face cache (where running MMAudio itself left it), if any."""
    try:
        from huggingface_hub import try_to_load_from_cache  # optional (comes with transformers)
    except ImportError:
        return None
    for repo in _HUB_IDS:
        found = try_to_load_from_cache(repo, _HUB_FILE)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def clip_weights(path: str | Path | None = None) -> tuple[Path, str]:
    """(path, sha256) of the verified DFN5B checkpoint: the explicit path, $AVBENCH_CLIP_WEIGHTS, the
    avbench cache, then the Hugging Face cache; missing everywhere, one WeightsError line naming the file,
    its URL, its licence and the flag."""
    spec = weights.REGISTRY[CLIP_WEIGHTS]
    if path is None and not os.environ.get(spec.env) and not weights.cached_path(CLIP_WEIGHTS).is_file():
        path = _hub_cached()
    return weights.resolve(CLIP_WEIGHTS, path)
