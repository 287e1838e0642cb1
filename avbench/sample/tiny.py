"""Tiny models for tests and benchmarks only: seeded random weights at toy sizes, nothing downloaded.

Two writers, used by tests/support (mmaudiokit, cogvideoxkit) and by `scripts/bench_text2av.py --tiny`
(scripts never import tests, so the writers live in the package):

- `write_tiny_mmaudio(dir, seed, variant)`: every file of a test-only MMAudio variant (`tiny-16k`, or
  `tiny-44k` for the 44.1 kHz path), in the released files' formats and under the names
  `MMAUDIO_VARIANTS[variant]` looks for in a weights folder: the flow network and the VAE as plain state
  dicts (as mmaudio_*.pth and v1-16.pth / v1-44.pth), the vocoder as `{"generator": state_dict}` with
  weight-norm parametrizations (as best_netG.pt; for tiny-44k as BigVGAN-v2's bigvgan_generator.pt, drawn
  on diffusers' `MMAudioVocoder` at the "tiny44" size, whose names are the original's), Synchformer with its
  `vfeat_extractor.*` keys, CLIP with open_clip's keys, and a BPE merges file in the format of
  bpe_simple_vocab_16e6.txt. The configs are `avbench.sample.mmaudio.tiny_configs`.
- `write_tiny_pipeline(dir, seed)`: a CogVideoXPipeline of the real diffusers/transformers classes at a toy
  size, saved as a diffusers folder (what `--video-model DIR` loads). diffusers and transformers are the
  optional `text2av` extra, so they are imported inside the functions.

The same seed writes the same bytes. The outputs of these models are noise: they show that every stage
runs and is recorded, never anything about the released models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.utils.parametrizations import weight_norm

from avbench.models.mmaudio.bigvgan import VOCODER44_CONFIGS, BigVGAN
from avbench.models.mmaudio.clip import CLIP
from avbench.models.mmaudio.network import build_network
from avbench.models.mmaudio.synchformer import Synchformer
from avbench.models.mmaudio.tokenizer import CLIPTokenizer
from avbench.models.mmaudio.vae import AudioVAE
from avbench.models.state_dict import seeded_state_dict
from avbench.sample.mmaudio import MMAUDIO_VARIANTS, tiny_configs

__all__ = ["TINY_FRAMES", "TINY_MERGES", "TINY_SIZE", "TINY_TEXT_LEN", "TINY_WORDS", "build_tiny_pipeline",
           "write_tiny_merges", "write_tiny_mmaudio", "write_tiny_pipeline"]

# ---- MMAudio `tiny-16k` -----------------------------------------------------------------------------------

# A handful of merges for the words the tests' prompts use; every other character stays a byte piece.
TINY_MERGES = ("t h", "th e</w>", "a n", "an d</w>", "o f</w>", "r u", "ru m", "rum s</w>", "c r", "cr o", "cro w",
               "crow d</w>", "g u", "gu n", "gun s</w>", "e r</w>", "i n", "in g</w>")


def write_tiny_merges(path: Path) -> Path:
    path.write_text("#version: 0.2 (avbench test merges)\n" + "\n".join(TINY_MERGES) + "\n", encoding="utf-8")
    return path


def _seeded(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state dict with every parameter redrawn by the fixtures' seeded recipe; buffers
    (latent/mel statistics) keep their initial values, so the statistics stay valid."""
    sd = module.state_dict()
    params = {name for name, _ in module.named_parameters()}
    drawn, _ = seeded_state_dict({k: v for k, v in sd.items() if k in params}, seed)
    return {k: drawn.get(k, v).clone().contiguous() for k, v in sd.items()}


def _tiny_vocoder44() -> torch.nn.Module:
    """diffusers' MMAudioVocoder at the tiny44 size with every convolution weight-normalised, so its state
    dict has the names of BigVGAN-v2's `bigvgan_generator.pt` (weight norm on all its convolutions)."""
    from diffusers import MMAudioVocoder  # the optional text2av extra, as for the real 44.1 kHz vocoder

    model = MMAudioVocoder(**VOCODER44_CONFIGS["tiny44"])
    for module in list(model.modules()):
        if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            weight_norm(module)
    return model


def write_tiny_mmaudio(directory: str | Path, seed: int = 0, variant: str = "tiny-16k") -> dict[str, Path]:
    """Write every file of the test-only `variant` ("tiny-16k" or "tiny-44k", which needs diffusers) into
    `directory`; returns {role: path} for `load_bundle(variant, paths=...)` (or pass `directory` as the
    weights folder). The encoder files are the same for both variants, so one folder can hold both."""
    spec = MMAUDIO_VARIANTS[variant]
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {role: d / name for role, name in spec.filenames.items()}
    write_tiny_merges(paths["vocab"])
    cfgs = tiny_configs(CLIPTokenizer(paths["vocab"]).vocab_size, variant)
    torch.manual_seed(seed)  # constructors draw their own inits; the seeded recipe then fixes the parameters
    torch.save(_seeded(build_network(cfgs["network"]), seed), paths["network"])
    torch.save(_seeded(AudioVAE(spec.mode), seed + 1), paths["vae"])
    vocoder = BigVGAN("tiny") if spec.mode == "tiny" else _tiny_vocoder44()
    torch.save({"generator": _seeded(vocoder, seed + 2)}, paths["vocoder"])
    torch.save(_seeded(Synchformer(cfgs["synchformer"]), seed + 3), paths["synchformer"])
    torch.save(_seeded(CLIP(cfgs["clip"]), seed + 4), paths["clip"])
    return paths


# ---- CogVideoX ------------------------------------------------------------------------------------------

TINY_WORDS = ("a", "the", "of", "on", "in", "with", "and", "at", "crowd", "stage", "guitar", "drums", "lights",
              "concert", "soldier", "rifle", "fires", "explosion", "tank", "desert", "night", "rain")
TINY_TEXT_LEN = 8  # tokens: the transformer's max_text_seq_length, to which the pipeline pads prompts
TINY_FRAMES = 17  # 8·2 + 1: 2.125 s at 8 fps, so the 10 fps benchmark clip (21 frames) holds a 16-frame window
TINY_SIZE = (16, 32)  # (height, width) in pixels: 2×4 latents, 1×2 patches


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(TINY_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=TINY_TEXT_LEN)


def build_tiny_pipeline(seed: int = 0):
    """A CogVideoXPipeline of the real diffusers/transformers classes at a toy size with seeded random
    weights (nothing downloaded): the T5 tokenizer is replaced by a word-level `tokenizers` vocabulary,
    because a SentencePiece model cannot be made offline."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = _tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                           num_heads=2, relative_attention_num_buckets=8, pad_token_id=0,
                                           eos_token_id=1, decoder_start_token_id=0))
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=8,
        text_embed_dim=16, num_layers=1, sample_width=TINY_SIZE[1] // 8, sample_height=TINY_SIZE[0] // 8,
        sample_frames=TINY_FRAMES, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=TINY_TEXT_LEN)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    # CogVideoX-2b's own scheduler settings (v-prediction, zero-SNR rescale, trailing spacing)
    scheduler = CogVideoXDDIMScheduler(timestep_spacing="trailing", prediction_type="v_prediction",
                                       rescale_betas_zero_snr=True, snr_shift_scale=3.0, clip_sample=False,
                                       beta_schedule="scaled_linear", set_alpha_to_one=True)
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)


def write_tiny_pipeline(directory: Path, seed: int = 0) -> Path:
    """The tiny pipeline saved as a diffusers folder (what `--video-model DIR` loads)."""
    build_tiny_pipeline(seed).save_pretrained(str(directory))
    return Path(directory)

