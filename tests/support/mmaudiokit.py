"""Files of the test-only `tiny-16k` MMAudio variant: seeded random weights in the released files' formats.

`write_tiny_mmaudio(dir, seed)` writes, under the names `avbench.sample.mmaudio.MMAUDIO_VARIANTS["tiny-16k"]`
looks for in a weights folder: the flow network and the VAE as plain state dicts (as mmaudio_*.pth and
v1-16.pth are), the vocoder as `{"generator": state_dict}` with weight-norm parametrizations (as
best_netG.pt), Synchformer with its `vfeat_extractor.*` keys, CLIP with open_clip's keys, and a tiny BPE
merges file in the format of bpe_simple_vocab_16e6.txt. Returns {role: path} for `load_bundle(paths=...)`.
The same seed writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avbench.models.mmaudio.bigvgan import BigVGAN
from avbench.models.mmaudio.clip import CLIP
from avbench.models.mmaudio.network import build_network
from avbench.models.mmaudio.synchformer import Synchformer
from avbench.models.mmaudio.tokenizer import CLIPTokenizer
from avbench.models.mmaudio.vae import AudioVAE
from avbench.models.state_dict import seeded_state_dict
from avbench.sample.mmaudio import MMAUDIO_VARIANTS, tiny_configs

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


def write_tiny_mmaudio(directory: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write every file of the `tiny-16k` variant into `directory`; returns {role: path}."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    names = MMAUDIO_VARIANTS["tiny-16k"].filenames
    paths = {role: d / name for role, name in names.items()}
    write_tiny_merges(paths["vocab"])
    cfgs = tiny_configs(CLIPTokenizer(paths["vocab"]).vocab_size)
    torch.manual_seed(seed)  # constructors draw their own inits; the seeded recipe then fixes the parameters
    torch.save(_seeded(build_network(cfgs["network"]), seed), paths["network"])
    torch.save(_seeded(AudioVAE("tiny"), seed + 1), paths["vae"])
    torch.save({"generator": _seeded(BigVGAN("tiny"), seed + 2)}, paths["vocoder"])
    torch.save(_seeded(Synchformer(cfgs["synchformer"]), seed + 3), paths["synchformer"])
    torch.save(_seeded(CLIP(cfgs["clip"]), seed + 4), paths["clip"])
    return paths
