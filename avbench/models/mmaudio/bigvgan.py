"""BigVGAN-v1 vocoder of MMAudio's 16 kHz mode (`best_netG.pt`), and the 44.1 kHz vocoder's loader.

16 kHz: log10-mel [B, 80, T] → wave [B, 1, 256·T] in [-1, 1] (tanh output). Its convolutions are
weight-normalised through `torch.nn.utils.parametrizations.weight_norm`, so the module's keys are
`<conv>.parametrizations.weight.original0/1` like the original's; torch converts files written with
the older `weight_g`/`weight_v` names on load. The norm is folded into plain weights once loaded
(`remove_weight_norm`), as the original does before inference.

44.1 kHz: diffusers' `MMAudioVocoder` (BigVGAN-v2, `nvidia/bigvgan_v2_44khz_128band_512x`) is used
as is; its keys are the original's after the weight norm is folded, so `vocoder44_from_original`
only folds `weight_g`/`weight_v` (or `original0`/`original1`) pairs into `weight`. `VOCODER44_CONFIGS`
gives its constructor arguments per mode: the released one (diffusers' defaults) and a test-only toy
("tiny44"); a diffusers folder brings its own config.json instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from torch.nn.utils.parametrize import is_parametrized, remove_parametrizations

from avbench.errors import CheckpointError, ModelConfigError
from avbench.models.state_dict import load_strict, safe_load

__all__ = ["BIGVGAN_CONFIGS", "VOCODER44_CONFIGS", "BigVGAN", "BigVGANConfig", "kaiser_sinc_filter",
           "load_vocoder", "vocoder44_from_original"]


@dataclass(frozen=True)
class BigVGANConfig:
    num_mels: int
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, int, int], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    @property
    def hop(self) -> int:
        return math.prod(self.upsample_rates)


BIGVGAN_CONFIGS: dict[str, BigVGANConfig] = {
    # The original's bigvgan_vocoder.yml (AMP block "1", snakebeta with log-scale parameters).
    "16k": BigVGANConfig(num_mels=80, upsample_rates=(4, 4, 2, 2, 2, 2),
                         upsample_kernel_sizes=(8, 8, 4, 4, 4, 4), upsample_initial_channel=1536),
    # Tests only; the same hop (256) as the 16 kHz mel so a tiny codec round-trips lengths.
    "tiny": BigVGANConfig(num_mels=80, upsample_rates=(4, 4, 4, 4), upsample_kernel_sizes=(8, 8, 8, 8),
                          upsample_initial_channel=32, resblock_kernel_sizes=(3, 7),
                          resblock_dilations=((1, 3, 5), (1, 3, 5))),
}


# diffusers `MMAudioVocoder(**kwargs)` per mode. "44k": its defaults are nvidia/bigvgan_v2_44khz_128band_512x.
# "tiny44" (tests only): 128 mels and the 44.1 kHz mel hop (8·8·8 = 512) at toy width.
VOCODER44_CONFIGS: dict[str, dict] = {
    "44k": {},
    "tiny44": {"num_mels": 128, "upsample_initial_channel": 16, "upsample_rates": (8, 8, 8),
               "upsample_kernel_sizes": (16, 16, 16), "resblock_kernel_sizes": (3,),
               "resblock_dilation_sizes": ((1, 3, 5),)},
}


def kaiser_sinc_filter(cutoff: float, half_width: float, size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass [1, 1, size] with unit DC gain (window β from Kaiser's formula)."""
    half = size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21.0) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(size, periodic=False, beta=beta)
    t = torch.arange(-half, half) + 0.5 if size % 2 == 0 else torch.arange(size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, size)


class SnakeBeta(nn.Module):
    """x + sin²(αx)/β per channel, α and β stored as logs (the released configs' `snake_logscale`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + torch.sin(x * alpha).pow(2) * (1.0 / (beta + 1e-9))


class _Up2(nn.Module):
    """2x upsampling by zero-stuffing + the low-pass, with replicate padding at the ends."""

    def __init__(self, size: int = 12):
        super().__init__()
        self.pad = size // 2 - 1
        self.crop_left = self.pad * 2 + (size - 2) // 2
        self.crop_right = self.pad * 2 + (size - 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.25, 0.3, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = 2 * F.conv_transpose1d(x, self.filter.expand(c, -1, -1), stride=2, groups=c)
        return x[..., self.crop_left:-self.crop_right]


class _LowPass(nn.Module):
    def __init__(self, size: int = 12):
        super().__init__()
        self.pad_left = size // 2 - (1 - size % 2)
        self.pad_right = size // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.25, 0.3, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(c, -1, -1), stride=2, groups=c)


class _Down2(nn.Module):
    def __init__(self, size: int = 12):
        super().__init__()
        self.lowpass = _LowPass(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class AntiAliasedSnake(nn.Module):
    """Snake-beta evaluated at twice the rate (up 2x → activation → down 2x) to limit aliasing."""

    def __init__(self, channels: int):
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = _Up2()
        self.downsample = _Down2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


def _wn_conv(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Module:
    return weight_norm(nn.Conv1d(cin, cout, kernel, dilation=dilation,
                                 padding=(kernel * dilation - dilation) // 2))


class AMPBlock(nn.Module):
    """Three (dilated conv → conv) residual pairs, each conv preceded by an anti-aliased snake."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(_wn_conv(channels, channels, kernel, d) for d in dilations)
        self.convs2 = nn.ModuleList(_wn_conv(channels, channels, kernel) for _ in dilations)
        # Released key order: activations alternate (before convs1[i], before convs2[i]).
        self.activations = nn.ModuleList(AntiAliasedSnake(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            x = x + c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x))))
        return x


class BigVGAN(nn.Module):
    """mel [B, num_mels, T] → wave [B, 1, T · hop]."""

    def __init__(self, cfg: BigVGANConfig | str):
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in BIGVGAN_CONFIGS:
                raise ModelConfigError(f"unknown BigVGAN config {cfg!r}; known: {', '.join(BIGVGAN_CONFIGS)}")
            cfg = BIGVGAN_CONFIGS[cfg]
        if len(cfg.upsample_rates) != len(cfg.upsample_kernel_sizes):
            raise ModelConfigError("BigVGAN config: upsample_rates and upsample_kernel_sizes differ in length")
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(cfg.num_mels, ch, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            # One-element lists: the released keys read `ups.<i>.0.*`.
            up = nn.ConvTranspose1d(ch, ch // 2, kernel, rate, padding=(kernel - rate) // 2)
            self.ups.append(nn.ModuleList([weight_norm(up)]))
            ch //= 2
            for k, dil in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations):
                self.resblocks.append(AMPBlock(ch, k, tuple(dil)))
        self.activation_post = AntiAliasedSnake(ch)
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, padding=3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        n = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up[0](x)
            blocks = self.resblocks[i * n:(i + 1) * n]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / n
        return torch.tanh(self.conv_post(self.activation_post(x)))

    def remove_weight_norm(self) -> BigVGAN:
        """Fold every weight norm into a plain `weight` (keys become `<conv>.weight`)."""
        for module in self.modules():
            if is_parametrized(module, "weight"):
                remove_parametrizations(module, "weight", leave_parametrized=True)
        return self


def _unwrap_generator(raw, path) -> dict[str, torch.Tensor]:
    if isinstance(raw, dict) and isinstance(raw.get("generator"), dict):
        raw = raw["generator"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: not a vocoder state dict (expected tensors, or a dict with "
                              f"'generator'); pass the BigVGAN generator file")
    return dict(raw)


def _fold_weight_norm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace (g, v) pairs, old or parametrization names, by w = g · v / ‖v‖ (norm over dims ≥ 1)."""
    out = dict(sd)
    pairs = [(k[:-len("weight_g")], "weight_g", "weight_v") for k in sd if k.endswith(".weight_g")]
    pairs += [(k[:-len("parametrizations.weight.original0")], "parametrizations.weight.original0",
               "parametrizations.weight.original1")
              for k in sd if k.endswith(".parametrizations.weight.original0")]
    for prefix, gk, vk in pairs:
        g, v = out.pop(prefix + gk), out.pop(prefix + vk)
        norm = torch.linalg.vector_norm(v, dim=tuple(range(1, v.ndim)), keepdim=True)
        out[prefix + "weight"] = v * (g / norm)
    return out


def _modern_weight_norm_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`x.weight_g`/`x.weight_v` (torch.nn.utils.weight_norm files) → parametrization names."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight_g"):
            k = k[:-len("weight_g")] + "parametrizations.weight.original0"
        elif k.endswith(".weight_v"):
            k = k[:-len("weight_v")] + "parametrizations.weight.original1"
        out[k] = v
    return out


def vocoder44_from_original(state_dict) -> dict[str, torch.Tensor]:
    """Keys of diffusers' `MMAudioVocoder` from an original BigVGAN-v2 generator state dict.

    Accepts the raw `bigvgan_generator.pt` content (`{"generator": …}`) or the bare state dict, with
    weight norm as `weight_g`/`weight_v`, as parametrizations, or already folded; the names are
    otherwise the same in both implementations.
    """
    return _fold_weight_norm(_unwrap_generator(state_dict, "state dict"))


def load_vocoder(mode: str, path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """The vocoder of `mode`, loaded strictly and ready for inference (weight norm folded, eval).

    "16k": our BigVGAN-v1 from `best_netG.pt`. "44k": diffusers' `MMAudioVocoder`, from either the
    original `bigvgan_generator.pt` (keys mapped) or a diffusers model folder. "tiny" / "tiny44": the
    test-only toys of the two (a tiny44 folder loads by its own config.json like any diffusers folder).
    """
    path = Path(path)
    if mode in VOCODER44_CONFIGS:
        return _load_vocoder44(path, mode, map_location)
    if mode not in BIGVGAN_CONFIGS:
        raise ModelConfigError(f"unknown vocoder mode {mode!r}; known: "
                               f"{', '.join([*BIGVGAN_CONFIGS, *VOCODER44_CONFIGS])}")
    sd = _modern_weight_norm_names(_unwrap_generator(safe_load(path, map_location=map_location), path))
    with torch.device("meta"):
        model = BigVGAN(mode)
    if not any(k.endswith(".parametrizations.weight.original0") for k in sd):
        model.remove_weight_norm()  # a file saved after folding
    load_strict(model, sd, path, f"a BigVGAN {mode} vocoder state dict", "pass the right file for this mode",
                dtype=torch.float32)
    return model.remove_weight_norm().eval().requires_grad_(False)


def _load_vocoder44(path: Path, mode: str, map_location) -> nn.Module:
    # diffusers is an optional extra (text2av); only the 44.1 kHz mode needs it.
    try:
        from diffusers import MMAudioVocoder
    except ImportError:
        raise ModelConfigError('the 44.1 kHz MMAudio vocoder needs diffusers: pip install -e ".[text2av]"') from None

    if path.is_dir():
        return MMAudioVocoder.from_pretrained(path).eval().requires_grad_(False)
    sd = vocoder44_from_original(_unwrap_generator(safe_load(path, map_location=map_location), path))
    with torch.device("meta"):
        model = MMAudioVocoder(**VOCODER44_CONFIGS[mode])
    what = "a BigVGAN-v2 44.1 kHz vocoder state dict" if mode == "44k" else f"a {mode} BigVGAN-v2 vocoder state dict"
    load_strict(model, sd, path, what, "pass the right file for this mode",
                dtype=torch.float32)
    return model.eval().requires_grad_(False)
