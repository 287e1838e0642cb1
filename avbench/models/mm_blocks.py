"""Blocks of the coupled MM-UNet (MM-Diffusion), state-dict compatible with the original.

Layout: video activations stay [B, C, F, H, W] (channels-first, optionally channels_last_3d in
memory, which is [B, F, H, W, C] — per-frame channels-last images and per-token rows at once);
audio stays [B, C, L]. The original rearranged between [b,f,c,h,w], [(b f),c,h,w], [(b h w),c,f]
and token layouts around every layer; here only attention builds token views.

Parameter names and shapes mirror the original modules (`video_in_layers.2.video_conv_spatial`,
`.GroupNorm.weight`, …) so released checkpoints load unchanged; the forward passes are our own.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import attend, window_index, windowed_cross_attention
from .layers import GroupNorm32, maybe_checkpoint, zero_module

__all__ = [
    "AudioConv",
    "CrossAttentionBlock",
    "InitialBlock",
    "MMNorm",
    "MMResBlock",
    "SelfAttention",
    "VideoConv",
    "VideoPointwise",
]


class MMNorm(nn.Module):
    """GroupNorm with fp32 statistics, wrapped like the original (`<name>.GroupNorm.weight`).

    `frame_stats` / `pixel_stats` normalise a [B, C, F, H, W] video per frame (over C/G, H, W) or
    per pixel (over C/G, F): the statistics the original got by reshaping to [(b f), c, hw] or
    [(b h w), c, f] before its attention blocks, without materialising those layouts.
    """

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.GroupNorm = GroupNorm32(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.GroupNorm(x)

    def _reduced(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        gn = self.GroupNorm
        b, c, f, h, w = x.shape
        xf = x.float().reshape(b, gn.num_groups, c // gn.num_groups, f, h * w)
        var, mean = torch.var_mean(xf, dim=dims, keepdim=True, correction=0)
        y = ((xf - mean) * torch.rsqrt(var + gn.eps)).reshape(b, c, f, h, w)
        y = y * gn.weight.float().view(1, c, 1, 1, 1) + gn.bias.float().view(1, c, 1, 1, 1)
        return y.to(x.dtype)

    def frame_stats(self, x: torch.Tensor) -> torch.Tensor:
        return self._reduced(x, (2, 4))

    def pixel_stats(self, x: torch.Tensor) -> torch.Tensor:
        return self._reduced(x, (2, 3))


class VideoConv(nn.Module):
    """Factorised '2d+1d' video convolution: k×k per frame, then k over time; 'same' padding.

    Parameters keep the original Conv2d / Conv1d shapes; the forward runs both as 3-D
    convolutions with a singleton kernel axis so the video never leaves [B, C, F, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.video_conv_spatial = nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad)
        self.video_conv_temporal = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, t = self.video_conv_spatial, self.video_conv_temporal
        p, q = s.padding[0], t.padding[0]
        b, _, f, h, w = x.shape
        if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and b * f > 1:
            # channels_last_3d memory [B, F, H, W, C] is, without a copy, a channels-last batch of
            # B*F images and a channels-last [B, C, F, H*W] sequence: both convs run as 2-D ones.
            y = F.conv2d(x.transpose(1, 2).reshape(b * f, -1, h, w), s.weight, s.bias, padding=p)
            c = y.shape[1]
            y = y.reshape(b, f, c, h * w).transpose(1, 2)  # [B, C, F, H*W], channels-last memory
            y = F.conv2d(y, t.weight.unsqueeze(-1), t.bias, padding=(q, 0))
            return y.reshape(b, c, f, h, w)
        x = F.conv3d(x, s.weight.unsqueeze(2), s.bias, padding=(0, p, p))
        return F.conv3d(x, t.weight[..., None, None], t.bias, padding=(q, 0, 0))


class VideoPointwise(nn.Module):
    """The original '3d' VideoConv: a Conv3d over [B, C, F, H, W] ('same' padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__()
        self.video_conv = nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.video_conv(x)


class AudioConv(nn.Module):
    """Conv1d over [B, C, L] with 'same' padding (dilation-aware)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        self.audio_conv = nn.Conv1d(in_channels, out_channels, kernel_size,
                                    padding=dilation * (kernel_size // 2), dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.audio_conv(x)


def _pointwise(x_tokens: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """Apply a 1×1 Conv1d/Conv3d as a linear map over the last (channel) dim of a token tensor."""
    w = conv.weight
    return F.linear(x_tokens, w.reshape(w.shape[0], w.shape[1]), conv.bias)


def _video_tokens(x: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, F, H*W, C] (a view when memory is channels_last_3d)."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(b, f, h * w, c)


def _video_from_tokens(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, F, H*W, C] -> [B, C, F, H, W] (channels_last_3d memory)."""
    b, f, _, c = t.shape
    return t.reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3)


class SelfAttention(nn.Module):
    """Multi-head self-attention with the original parameters (norm, qkv, proj_out).

    Used three ways, as the original: spatial (tokens = pixels of one frame), temporal
    (tokens = frames of one pixel), audio (tokens = samples). q, k, v are split first, heads second.
    """

    def __init__(self, channels: int, num_heads: int, norm_groups: int = 32, backend: str = "sdpa"):
        super().__init__()
        self.num_heads = num_heads
        self.backend = backend
        self.norm = MMNorm(channels, norm_groups)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def _attend_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, T, C] (normalised) -> attention output [N, T, C] before proj_out."""
        n, t, c = tokens.shape
        h = self.num_heads
        qkv = _pointwise(tokens, self.qkv).reshape(n, t, 3, h, c // h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [N, H, T, d]
        o = attend(q, k, v, self.backend)
        return o.transpose(1, 2).reshape(n, t, c)

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        tok = _video_tokens(self.norm.frame_stats(x)).reshape(b * f, h * w, c)
        o = _pointwise(self._attend_tokens(tok), self.proj_out)
        return x + _video_from_tokens(o.reshape(b, f, h * w, c), h, w)

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        tok = _video_tokens(self.norm.pixel_stats(x)).transpose(1, 2).reshape(b * h * w, f, c)
        o = _pointwise(self._attend_tokens(tok), self.proj_out)
        o = o.reshape(b, h * w, f, c).transpose(1, 2)
        return x + _video_from_tokens(o, h, w)

    def audio(self, x: torch.Tensor) -> torch.Tensor:
        tok = self.norm(x).transpose(1, 2)  # [B, L, C]
        o = _pointwise(self._attend_tokens(tok), self.proj_out)
        return x + o.transpose(1, 2)


class InitialBlock(nn.Module):
    """Stem: '2d+1d' k=3 video convolution and k=3 audio convolution."""

    def __init__(self, video_in: int, audio_in: int, channels: int):
        super().__init__()
        self.video_conv = VideoConv(video_in, channels, 3)
        self.audio_conv = AudioConv(audio_in, channels, 3)

    def forward(self, video, audio, emb=None, generator=None):
        return self.video_conv(video), self.audio_conv(audio)


class MMResBlock(nn.Module):
    """Coupled residual block: video and audio branches share one timestep embedding.

    Order of operations follows the original: in-layers (norm, SiLU, conv) → optional
    down/up-sampling of both the branch and the skip → scale-shift norm from the embedding →
    SiLU, dropout, zero-initialised 1×1 conv → skip + branch → optional video self-attention
    (spatial, then temporal) and audio self-attention.
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 *, audio_dilation: int = 1, use_scale_shift_norm: bool = True, up: bool = False,
                 down: bool = False, video_attention: bool = False, audio_attention: bool = False,
                 num_heads: int = 4, norm_groups: int = 32, backend: str = "sdpa",
                 use_checkpoint: bool = False, audio_factor: int = 4):
        super().__init__()
        out = out_channels or channels
        # waveforms shrink 4x per level as in the original; short audio latents may not shrink at all
        self.audio_factor = audio_factor
        self.out_channels = out
        self.use_scale_shift_norm = use_scale_shift_norm
        self.up, self.down = up, down
        self.use_checkpoint = use_checkpoint
        self.video_in_layers = nn.Sequential(MMNorm(channels, norm_groups), nn.SiLU(), VideoConv(channels, out, 3))
        self.audio_in_layers = nn.Sequential(MMNorm(channels, norm_groups), nn.SiLU(),
                                             AudioConv(channels, out, 3, dilation=audio_dilation))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out if use_scale_shift_norm else out))
        self.video_out_layers = nn.Sequential(MMNorm(out, norm_groups), nn.SiLU(), nn.Dropout(dropout),
                                              zero_module(VideoPointwise(out, out, 1)))
        self.audio_out_layers = nn.Sequential(MMNorm(out, norm_groups), nn.SiLU(), nn.Dropout(dropout),
                                              zero_module(AudioConv(out, out, 1)))
        if out == channels:
            self.video_skip_connection = nn.Identity()
            self.audio_skip_connection = nn.Identity()
        else:
            self.video_skip_connection = VideoPointwise(channels, out, 1)
            self.audio_skip_connection = AudioConv(channels, out, 1)
        self.video_attention = video_attention
        self.audio_attention = audio_attention
        if video_attention:
            self.spatial_attention_block = SelfAttention(out, num_heads, norm_groups, backend)
            self.temporal_attention_block = SelfAttention(out, num_heads, norm_groups, backend)
        if audio_attention:
            self.audio_attention_block = SelfAttention(out, num_heads, norm_groups, backend)

    def _resample(self, video: torch.Tensor, audio: torch.Tensor):
        k = self.audio_factor
        if self.down:
            return F.avg_pool3d(video, (1, 2, 2)), (F.avg_pool1d(audio, k) if k > 1 else audio)
        if self.up:
            return (F.interpolate(video, scale_factor=(1, 2, 2), mode="nearest"),
                    F.interpolate(audio, scale_factor=k, mode="nearest") if k > 1 else audio)
        return video, audio

    def _forward(self, video, audio, emb):
        vh = self.video_in_layers(video)
        ah = self.audio_in_layers(audio)
        if self.up or self.down:
            vh, ah = self._resample(vh, ah)
            video, audio = self._resample(video, audio)
        e = self.emb_layers(emb).to(vh.dtype)
        vnorm, vrest = self.video_out_layers[0], self.video_out_layers[1:]
        anorm, arest = self.audio_out_layers[0], self.audio_out_layers[1:]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            vh = vnorm(vh) * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]
            ah = anorm(ah) * (1 + scale[:, :, None]) + shift[:, :, None]
            vh, ah = vrest(vh), arest(ah)
        else:
            vh = self.video_out_layers(vh + e[:, :, None, None, None])
            ah = self.audio_out_layers(ah + e[:, :, None])
        video = self.video_skip_connection(video) + vh
        audio = self.audio_skip_connection(audio) + ah
        if self.video_attention:
            video = self.temporal_attention_block.temporal(self.spatial_attention_block.spatial(video))
        if self.audio_attention:
            audio = self.audio_attention_block.audio(audio)
        return video, audio

    def forward(self, video, audio, emb, generator=None):
        return maybe_checkpoint(self._forward, video, audio, emb, enabled=self.use_checkpoint)


class CrossAttentionBlock(nn.Module):
    """RS-MMA: random-shift windowed cross-modal attention between video and audio.

    Video tokens of frame i attend to the audio of frames i+s … i+s+window-1 (cyclic), audio of
    frame i to the video of the same frames; s is drawn per call from [0, F - window] when shifting
    is active. Unlike the original (Python's global `random`, also at inference), s comes from a
    torch generator the caller can pass, and is 0 in eval mode unless `shift_in_eval`.
    """

    def __init__(self, channels: int, *, num_heads: int = 1, num_head_channels: int = -1,
                 local_window: int = 1, window_shift: bool = False, shift_in_eval: bool = False,
                 norm_groups: int = 32, backend: str = "sdpa", use_checkpoint: bool = False):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.local_window = local_window
        self.window_shift = window_shift
        self.shift_in_eval = shift_in_eval
        self.backend = backend
        self.use_checkpoint = use_checkpoint
        self.v_norm = MMNorm(channels, norm_groups)
        self.a_norm = MMNorm(channels, norm_groups)
        self.v_qkv = nn.Conv1d(channels, channels * 3, 1)
        self.a_qkv = nn.Conv1d(channels, channels * 3, 1)
        self.video_proj_out = zero_module(VideoPointwise(channels, channels, 1))
        self.audio_proj_out = zero_module(AudioConv(channels, channels, 1))

    def draw_shift(self, frames: int, generator: torch.Generator | None = None) -> int:
        """The window shift for one call: uniform in [0, frames - window] when active, else 0."""
        active = self.window_shift and (self.training or self.shift_in_eval)
        high = frames - self.local_window
        if not active or high <= 0:
            return 0
        # Drawn on the generator's device (CPU by default): no GPU sync, and immune to a
        # surrounding `with torch.device(...)` context.
        device = generator.device if generator is not None else torch.device("cpu")
        return int(torch.randint(0, high + 1, (1,), generator=generator, device=device).item())

    def _forward(self, video, audio, index: torch.Tensor):
        b, c, f, h, w = video.shape
        length = audio.shape[-1]
        if length % f:
            raise ValueError(f"audio length {length} at this level is not divisible by {f} frames; "
                             "choose audio_size so that L / 4**level is a multiple of the frame count")
        heads = self.num_heads
        d = c // heads
        apf = length // f
        vqkv = _pointwise(_video_tokens(self.v_norm(video)), self.v_qkv)  # [B, F, P, 3C]
        aqkv = _pointwise(self.a_norm(audio).transpose(1, 2), self.a_qkv)  # [B, L, 3C]
        vqkv = vqkv.reshape(b, f, h * w, 3, heads, d)
        aqkv = aqkv.reshape(b, f, apf, 3, heads, d)
        vq, vk, vv = vqkv.unbind(3)
        aq, ak, av = aqkv.unbind(3)
        if self.backend == "reference":
            vo, ao = _reference_cross(vq, vk, vv, aq, ak, av, index)
        else:
            vo, ao = windowed_cross_attention(vq, vk, vv, aq, ak, av, window=self.local_window,
                                              index=index, backend=self.backend)
        vo = _pointwise(vo.reshape(b, f, h * w, c), self.video_proj_out.video_conv)
        ao = _pointwise(ao.reshape(b, length, c), self.audio_proj_out.audio_conv)
        return video + _video_from_tokens(vo, h, w), audio + ao.transpose(1, 2)

    def forward(self, video, audio, emb=None, generator=None):
        index = self.window_frames(video.shape[2], generator, video.device)
        return maybe_checkpoint(self._forward, video, audio, index, enabled=self.use_checkpoint)

    @torch.compiler.disable
    def window_frames(self, frames: int, generator: torch.Generator | None, device) -> torch.Tensor:
        """[F, window] frame indices for this call, with a freshly drawn shift.

        Kept out of torch.compile: the shift reaches compiled code as a tensor, so changing it
        never triggers recompilation.
        """
        shift = self.draw_shift(frames, generator)
        return window_index(frames, min(self.local_window, frames), shift, device=device)


def _reference_cross(vq, vk, vv, aq, ak, av, idx: torch.Tensor):
    """Frame-by-frame loop over explicit key indices, as the original computes it (tests only).

    `idx` [F, window] lists the frames each frame's window covers (`window_index`).
    """
    b, f, p, h, d = vq.shape
    a = aq.shape[2]
    vk_all, vv_all = vk.reshape(b, f * p, h, d), vv.reshape(b, f * p, h, d)
    ak_all, av_all = ak.reshape(b, f * a, h, d), av.reshape(b, f * a, h, d)
    vouts, aouts = [], []
    for i in range(f):
        a_keys = torch.cat([torch.arange(j * a, (j + 1) * a) for j in idx[i].tolist()]).to(vq.device)
        v_keys = torch.cat([torch.arange(j * p, (j + 1) * p) for j in idx[i].tolist()]).to(vq.device)

        def hf(x):  # [B, T, H, d] -> [B, H, T, d]
            return x.transpose(1, 2)

        vouts.append(hf(attend(hf(vq[:, i]), hf(ak_all[:, a_keys]), hf(av_all[:, a_keys]), "reference")))
        aouts.append(hf(attend(hf(aq[:, i]), hf(vk_all[:, v_keys]), hf(vv_all[:, v_keys]), "reference")))
    return torch.stack(vouts, 1), torch.stack(aouts, 1)
