"""The MMAudio flow network (Cheng et al., 2025): configs of the released variants, the model, a loader.

The model predicts the flow velocity of audio latents from three condition streams: CLIP frame
features (8 fps), Synchformer features (24 fps of tokens) and text token features. Its state dict is
key for key and shape for shape that of the released `mmaudio_*.pth` files (listings in
tests/fixtures/mmaudio/network/listings). Condition work that does not depend on the latent or the
time is done once per clip (`preprocess_conditions`), so the sampler only re-runs `predict_flow`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avbench import checkpoint as fmt
from avbench.errors import ModelConfigError, SampleError
from avbench.models.mmaudio.blocks import FinalBlock, GatedFFN, JointBlock, StreamBlock, TimeEmbedding, TokenConv1d
from avbench.models.mmaudio.rope import rope_table
from avbench.models.state_dict import clean_state_dict, load_strict, mismatch

__all__ = ["VARIANTS", "Conditions", "MMAudio", "MMAudioConfig", "build_network", "load_network"]

_SYNC_TOKENS_PER_WINDOW = 8  # Synchformer tokens per video window; each window has its own position


@dataclass(frozen=True)
class MMAudioConfig:
    """Shape of one MMAudio network. Sequence lengths are those of the trained 8 s clip; other
    durations are set on the built model with `update_seq_lengths`."""

    latent_dim: int
    clip_dim: int
    sync_dim: int
    text_dim: int
    hidden_dim: int
    depth: int  # joint blocks + fused blocks
    fused_depth: int  # blocks at the end that see the audio stream only
    num_heads: int
    latent_seq_len: int
    clip_seq_len: int
    sync_seq_len: int
    text_seq_len: int = 77
    mlp_ratio: float = 4.0
    v2: bool = False  # large_44k_v2: SiLU input projections, time features of width hidden_dim
    sample_rate: int = 16000  # of the audio the latents decode to (which VAE/vocoder go with it)

    def __post_init__(self):
        problems = []
        if self.hidden_dim % self.num_heads or (self.hidden_dim // self.num_heads) % 2:
            problems.append(f"hidden_dim {self.hidden_dim} must split into {self.num_heads} heads of even width")
        if not 0 <= self.fused_depth <= self.depth:
            problems.append(f"fused_depth {self.fused_depth} must be within depth {self.depth}")
        if self.sync_seq_len % _SYNC_TOKENS_PER_WINDOW:
            problems.append(f"sync_seq_len {self.sync_seq_len} must be a multiple of {_SYNC_TOKENS_PER_WINDOW}")
        if problems:
            raise ModelConfigError("MMAudio config: " + "; ".join(problems))


def _released(heads: int, depth: int, fused: int, latent_dim: int, latent_seq_len: int, rate: int,
              v2: bool = False) -> MMAudioConfig:
    return MMAudioConfig(latent_dim=latent_dim, clip_dim=1024, sync_dim=768, text_dim=1024,
                         hidden_dim=64 * heads, depth=depth, fused_depth=fused, num_heads=heads,
                         latent_seq_len=latent_seq_len, clip_seq_len=64, sync_seq_len=192, v2=v2,
                         sample_rate=rate)


# tiny_16k / tiny_16k_v2 are for tests only (parity fixtures, fast pipelines); no weights exist. Their
# sequence lengths are those of a 1 s clip at 16 kHz (sequences.sequence_lengths(1.0, 16000)).
_TINY = MMAudioConfig(latent_dim=20, clip_dim=24, sync_dim=16, text_dim=12, hidden_dim=32, depth=3,
                      fused_depth=1, num_heads=2, latent_seq_len=32, clip_seq_len=8, sync_seq_len=16,
                      text_seq_len=6, sample_rate=16000)

VARIANTS: dict[str, MMAudioConfig] = {
    "small_16k": _released(7, 12, 8, 20, 250, 16000),
    "small_44k": _released(7, 12, 8, 40, 345, 44100),
    "medium_44k": _released(14, 12, 8, 40, 345, 44100),
    "large_44k": _released(14, 21, 14, 40, 345, 44100),
    "large_44k_v2": _released(14, 21, 14, 40, 345, 44100, v2=True),
    "tiny_16k": _TINY,
    "tiny_16k_v2": dataclasses.replace(_TINY, v2=True),
    # The same toy widths at the 44.1 kHz latent rate: 1 s is 44 latents (sequence_lengths(1.0, 44100)).
    "tiny_44k": dataclasses.replace(_TINY, latent_seq_len=44, sample_rate=44100),
}


@dataclass
class Conditions:
    """Per-clip condition tokens, projected to the hidden width (reused at every flow step).

    clip [B, clip_len, D], sync [B, latent_len, D] (already upsampled to the latent rate),
    text [B, text_len, D]; clip_global and text_global [B, D] are their pooled summaries.
    """

    clip: torch.Tensor
    sync: torch.Tensor
    text: torch.Tensor
    clip_global: torch.Tensor
    text_global: torch.Tensor

    def expand(self, batch: int) -> Conditions:
        return Conditions(**{f.name: getattr(self, f.name).expand(batch, *getattr(self, f.name).shape[1:])
                             for f in dataclasses.fields(self)})


class MMAudio(nn.Module):
    """Joint (audio + CLIP + text) then audio-only ("fused") adaLN transformer over audio latents."""

    def __init__(self, config: MMAudioConfig):
        super().__init__()
        cfg = self.config = config
        d = cfg.hidden_dim
        self._latent_seq_len, self._clip_seq_len, self._sync_seq_len = (
            cfg.latent_seq_len, cfg.clip_seq_len, cfg.sync_seq_len)

        # v1 weights were trained with SELU after the token convolutions and no activation after the
        # linear projections; v2 uses SiLU in both places, which moves the FFN's Sequential index.
        act = nn.SiLU if cfg.v2 else nn.SELU

        def after_linear():
            return [nn.SiLU()] if cfg.v2 else []

        self.register_buffer("latent_mean", torch.zeros(1, 1, cfg.latent_dim))
        self.register_buffer("latent_std", torch.ones(1, 1, cfg.latent_dim))
        self.register_buffer("empty_string_feat", torch.zeros(cfg.text_seq_len, cfg.text_dim))
        self.sync_pos_emb = nn.Parameter(torch.zeros(1, 1, _SYNC_TOKENS_PER_WINDOW, cfg.sync_dim))
        self.empty_clip_feat = nn.Parameter(torch.zeros(1, cfg.clip_dim))
        self.empty_sync_feat = nn.Parameter(torch.zeros(1, cfg.sync_dim))

        self.audio_input_proj = nn.Sequential(TokenConv1d(cfg.latent_dim, d, 7, padding=3), act(),
                                              GatedFFN(d, 4 * d, kernel=7))
        self.clip_input_proj = nn.Sequential(nn.Linear(cfg.clip_dim, d), *after_linear(),
                                             GatedFFN(d, 4 * d, kernel=3))
        self.sync_input_proj = nn.Sequential(TokenConv1d(cfg.sync_dim, d, 7, padding=3), act(),
                                             GatedFFN(d, 4 * d, kernel=3))
        self.text_input_proj = nn.Sequential(nn.Linear(cfg.text_dim, d), *after_linear(), GatedFFN(d, 4 * d))
        self.clip_cond_proj = nn.Linear(d, d)
        self.text_cond_proj = nn.Linear(d, d)
        self.global_cond_mlp = GatedFFN(d, 4 * d)
        self.final_layer = FinalBlock(d, cfg.latent_dim)
        self.t_embed = (TimeEmbedding(d, features=d, max_period=1) if cfg.v2
                        else TimeEmbedding(d, features=256, max_period=10000))
        joint = cfg.depth - cfg.fused_depth
        # The last joint block's visual/text outputs are never read, so it only feeds them in.
        self.joint_blocks = nn.ModuleList(
            JointBlock(d, cfg.num_heads, cfg.mlp_ratio, pre_only=(i == joint - 1)) for i in range(joint))
        self.fused_blocks = nn.ModuleList(
            StreamBlock(d, cfg.num_heads, cfg.mlp_ratio, kernel=3) for _ in range(cfg.fused_depth))

        self._init_weights()
        self.refresh_tables()

    # ---- construction -----------------------------------------------------------------------------
    def _init_weights(self) -> None:
        """The original's training init: Xavier linears, zeroed modulations and output (a fresh model
        predicts zero flow). Sampling always loads weights; this matters only for training."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        streams = [b for jb in self.joint_blocks for b in (jb.latent_block, jb.clip_block, jb.text_block)]
        for block in [*streams, *self.fused_blocks, self.final_layer]:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.conv.weight)
        nn.init.zeros_(self.final_layer.conv.bias)

    def refresh_tables(self) -> None:
        """Recompute the non-persistent tables (rotary angles, time frequencies) on the model's device,
        for the current sequence lengths."""
        device = self.latent_mean.device
        head_dim = self.config.hidden_dim // self.config.num_heads
        # CLIP positions are stretched to the latent time axis: same instant, same angle.
        tables = {
            "latent_rot": rope_table(self._latent_seq_len, head_dim, device=device),
            "clip_rot": rope_table(self._clip_seq_len, head_dim, scale=self._latent_seq_len / self._clip_seq_len,
                                   device=device),
        }
        for name, table in tables.items():
            self.register_buffer(name, table, persistent=False)
        self.t_embed.register_buffer("freqs", self.t_embed.make_freqs(device), persistent=False)

    def _apply(self, fn, recurse=True):
        # .to(bfloat16) would round the rotary angles and time frequencies too (an 8 s clip's last
        # angles by whole degrees); rebuild them in float32 on the new device after any move or cast.
        out = super()._apply(fn, recurse)
        self.refresh_tables()
        return out

    def update_seq_lengths(self, latent_seq_len: int, clip_seq_len: int, sync_seq_len: int) -> None:
        """Switch to another clip duration (counts from `sequences.sequence_lengths`)."""
        if sync_seq_len % _SYNC_TOKENS_PER_WINDOW:
            raise ModelConfigError(f"sync_seq_len {sync_seq_len} must be a multiple of {_SYNC_TOKENS_PER_WINDOW}")
        self._latent_seq_len, self._clip_seq_len, self._sync_seq_len = latent_seq_len, clip_seq_len, sync_seq_len
        self.refresh_tables()

    @property
    def latent_seq_len(self) -> int:
        return self._latent_seq_len

    @property
    def clip_seq_len(self) -> int:
        return self._clip_seq_len

    @property
    def sync_seq_len(self) -> int:
        return self._sync_seq_len

    @property
    def text_seq_len(self) -> int:
        return self.config.text_seq_len

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # ---- latents ----------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """VAE latents [B, N, latent_dim] → the unit-scale space the flow runs in (not in place)."""
        return (x - self.latent_mean) / self.latent_std

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Flow-space latents back to VAE latents (not in place)."""
        return x * self.latent_std + self.latent_mean

    # ---- conditions -------------------------------------------------------------------------------
    def empty_clip_sequence(self, batch: int) -> torch.Tensor:
        return self.empty_clip_feat.expand(batch, self._clip_seq_len, -1)

    def empty_sync_sequence(self, batch: int) -> torch.Tensor:
        return self.empty_sync_feat.expand(batch, self._sync_seq_len, -1)

    def empty_text_sequence(self, batch: int) -> torch.Tensor:
        """Text features of the empty prompt (stored in the checkpoint; the text encoder is not needed)."""
        return self.empty_string_feat.expand(batch, -1, -1)

    def _check(self, name: str, x: torch.Tensor, length: int, width: int) -> None:
        if x.ndim != 3 or x.shape[1] != length or x.shape[2] != width:
            raise SampleError(f"MMAudio {name} features must be [batch, {length}, {width}] for the current "
                              f"sequence lengths, got {list(x.shape)}; call update_seq_lengths for another "
                              "duration")

    def preprocess_conditions(self, clip_f: torch.Tensor, sync_f: torch.Tensor,
                              text_f: torch.Tensor) -> Conditions:
        """Project CLIP [B, clip_len, clip_dim], Synchformer [B, sync_len, sync_dim] and text
        [B, text_len, text_dim] features once per clip."""
        cfg = self.config
        self._check("clip", clip_f, self._clip_seq_len, cfg.clip_dim)
        self._check("sync", sync_f, self._sync_seq_len, cfg.sync_dim)
        self._check("text", text_f, cfg.text_seq_len, cfg.text_dim)
        windows = sync_f.unflatten(1, (-1, _SYNC_TOKENS_PER_WINDOW)) + self.sync_pos_emb
        clip = self.clip_input_proj(clip_f)
        sync = self.sync_input_proj(windows.flatten(1, 2))
        text = self.text_input_proj(text_f)
        # Sync tokens come at 24 per second; repeat them onto the latent rate (31.25 or 43 per second).
        sync = F.interpolate(sync.transpose(1, 2), size=self._latent_seq_len, mode="nearest-exact").transpose(1, 2)
        return Conditions(clip=clip, sync=sync, text=text, clip_global=self.clip_cond_proj(clip.mean(dim=1)),
                          text_global=self.text_cond_proj(text.mean(dim=1)))

    def empty_conditions(self, batch: int, negative_text: torch.Tensor | None = None) -> Conditions:
        """Conditions of the unconditional (CFG) branch: learned empty CLIP/sync features and the empty
        prompt, or `negative_text` features [batch, text_len, text_dim] for a negative prompt."""
        text = self.empty_text_sequence(1) if negative_text is None else negative_text
        cond = self.preprocess_conditions(self.empty_clip_sequence(1), self.empty_sync_sequence(1), text)
        if negative_text is None:
            return cond.expand(batch)
        return Conditions(clip=cond.clip.expand(batch, -1, -1), sync=cond.sync.expand(batch, -1, -1),
                          text=cond.text, clip_global=cond.clip_global.expand(batch, -1),
                          text_global=cond.text_global)

    # ---- the flow ---------------------------------------------------------------------------------
    def predict_flow(self, latent: torch.Tensor, t: torch.Tensor | float, conditions: Conditions) -> torch.Tensor:
        """Velocity d latent / d t for normalised latents [B, latent_len, latent_dim] at flow time t
        (0 = noise, 1 = data; a float or a [B] tensor)."""
        if latent.ndim != 3 or latent.shape[1:] != (self._latent_seq_len, self.config.latent_dim):
            raise SampleError(f"MMAudio latents must be [batch, {self._latent_seq_len}, {self.config.latent_dim}], "
                              f"got {list(latent.shape)}")
        t = torch.as_tensor(t, device=latent.device, dtype=latent.dtype)
        if t.ndim == 0:
            t = t.expand(latent.shape[0])
        x = self.audio_input_proj(latent)
        global_c = (self.t_embed(t) + self.global_cond_mlp(conditions.clip_global + conditions.text_global))[:, None]
        token_c = global_c + conditions.sync
        clip, text = conditions.clip, conditions.text
        for block in self.joint_blocks:
            x, clip, text = block(x, clip, text, global_c, token_c, self.latent_rot, self.clip_rot)
        for block in self.fused_blocks:
            x = block(x, token_c, self.latent_rot)
        # The released weights were trained with the final layer on the global condition, not the
        # per-token one (upstream issue #55); changing it would break the checkpoints.
        return self.final_layer(x, global_c)

    def forward(self, latent: torch.Tensor, clip_f: torch.Tensor, sync_f: torch.Tensor, text_f: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        return self.predict_flow(latent, t, self.preprocess_conditions(clip_f, sync_f, text_f))


def _variant(name: str) -> MMAudioConfig:
    if name not in VARIANTS:
        raise ModelConfigError(f"unknown MMAudio variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def build_network(variant: str | MMAudioConfig) -> MMAudio:
    """A freshly initialised network of a named variant (or an explicit config)."""
    return MMAudio(variant if isinstance(variant, MMAudioConfig) else _variant(variant))


# Non-persistent tables some saved files still carry; they are recomputed, never loaded.
_DERIVED_KEYS = ("t_embed.freqs", "latent_rot", "clip_rot")


@functools.cache
def _shapes(variant: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in MMAudio(VARIANTS[variant]).state_dict().items()}


def load_network(variant: str, path: str | Path, map_location: str | torch.device = "cpu") -> MMAudio:
    """The released network `mmaudio_<variant>.pth` (a plain state dict, read with weights_only=True),
    checked key for key and shape for shape; returned in eval mode, float32 unless the file is not."""
    cfg = _variant(variant)
    path = Path(path)
    sd = clean_state_dict(fmt.read(path, map_location=map_location))
    for key in _DERIVED_KEYS:
        sd.pop(key, None)

    def hint() -> str:  # run only on a mismatch: it builds every variant's listing
        fits = [name for name in VARIANTS if name != variant and not mismatch(sd, _shapes(name))]
        return f"it looks like {fits[0]}; pass that variant" if fits else "check that it is an MMAudio network file"

    with torch.device("meta"):  # no second copy of up to 4 GB: the file's tensors become the parameters
        model = MMAudio(cfg)
    load_strict(model, sd, path, f"an MMAudio {variant} network", hint, refresh=model.refresh_tables)
    return model.eval()
