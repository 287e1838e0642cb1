"""The sampling checkpoint format and loading of original MM-Diffusion state-dict files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avbench.diffusion.schedules import DiffusionConfig
from avbench.io import sha256_file
from avbench.models.checkpoint import FORMAT, load_for_sampling, save_checkpoint
from avbench.models.mmunet import MMUNet, MMUNetConfig
from avbench.models.superres import SuperResConfig, SuperResUNet

from support.samplekit import make_mmunet_checkpoint, randomize, tiny_mmunet_config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_mmunet_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", steps=100)


def test_checkpoint_is_weights_only_readable_and_complete(ckpt):
    obj = torch.load(ckpt, weights_only=True)
    assert obj["format"] == FORMAT and obj["format_version"] == 1 and obj["kind"] == "mmunet"
    assert obj["diffusion"] == DiffusionConfig(steps=100).to_dict()
    assert MMUNetConfig.from_dict(obj["config"]) == tiny_mmunet_config()
    assert obj["extra"] == {"step": 7, "note": "test"}
    assert set(obj["state_dict"]) == set(obj["ema_state"]) == set(MMUNet(tiny_mmunet_config()).state_dict())


def test_load_prefers_ema_and_reports_what_it_loaded(ckpt):
    obj = torch.load(ckpt, weights_only=True)
    name = "time_embed.0.weight"
    model, info = load_for_sampling(ckpt)
    assert not model.training
    torch.testing.assert_close(model.state_dict()[name], obj["ema_state"][name])
    assert info["weights"] == "ema" and info["source"] == "avbench" and info["sha256"] == sha256_file(ckpt)
    assert info["diffusion"]["steps"] == 100 and info["notes"] == []
    raw, info = load_for_sampling(ckpt, prefer_ema=False)
    torch.testing.assert_close(raw.state_dict()[name], obj["state_dict"][name])
    assert info["weights"] == "raw"


def test_diffusion_step_mismatch_is_refused(ckpt):
    load_for_sampling(ckpt, diffusion_steps=100)  # the stored value is fine
    with pytest.raises(ValueError, match="trained with 100 diffusion steps but 1000"):
        load_for_sampling(ckpt, diffusion_steps=1000)
    with pytest.raises(ValueError, match="only applies to original"):
        load_for_sampling(ckpt, original_config="tiny")
    with pytest.raises(ValueError, match="expected superres"):
        load_for_sampling(ckpt, expect_kind="superres")


def test_wrapped_model_is_saved_without_prefixes(tmp_path):
    class Wrapper(torch.nn.Module):  # what DDP looks like from the outside
        def __init__(self, m):
            super().__init__()
            self.module = m

    cfg = SuperResConfig.tiny()
    inner = randomize(SuperResUNet(cfg), 3)
    path = save_checkpoint(tmp_path / "sr.pt", Wrapper(inner), kind="superres", config=cfg,
                           diffusion={"steps": 50, "variance": "learned_range"},
                           ema_state={"module." + k: v for k, v in inner.state_dict().items()})
    model, info = load_for_sampling(path, expect_kind="superres")
    assert info["diffusion"]["learned_sigma"] is True
    x, low, t = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 32, 32), torch.tensor([10])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, low), inner(x, t, low))


def test_bad_extra_and_kind_fail_clearly(tmp_path):
    model = MMUNet(tiny_mmunet_config())
    with pytest.raises(TypeError, match=r"extra\.when"):
        save_checkpoint(tmp_path / "x.pt", model, kind="mmunet", config=model.cfg, diffusion={}, extra={"when": object()})
    with pytest.raises(ValueError, match="unknown model kind"):
        save_checkpoint(tmp_path / "x.pt", model, kind="unet", config=model.cfg, diffusion={})
    assert not (tmp_path / "x.pt").exists()


def test_original_state_dict_loads_with_named_preset_and_loud_defaults(tmp_path):
    ref = randomize(MMUNet(MMUNetConfig.tiny()), 4)
    path = tmp_path / "model350000.pt"
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, path)  # a DDP-saved release
    model, info = load_for_sampling(path, original_config="tiny")
    assert info["source"] == "mm-diffusion" and info["kind"] == "mmunet"
    assert info["diffusion"] == DiffusionConfig(steps=1000).to_dict()
    assert any("ASSUMED 1000" in n for n in info["notes"])
    got, want = model.state_dict(), ref.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    _, info = load_for_sampling(path, original_config="tiny", diffusion_steps=2000)
    assert info["diffusion"]["steps"] == 2000 and not any("ASSUMED" in n for n in info["notes"])
    # Without a preset the seed config is assumed, and these weights do not fit it: say so, don't guess.
    with pytest.raises(ValueError, match="do not fit the mmunet config"):
        load_for_sampling(path)


def test_original_sr_file_is_recognised(tmp_path):
    path = tmp_path / "sr.pt"
    torch.save(SuperResUNet(SuperResConfig.tiny()).state_dict(), path)
    _, info = load_for_sampling(path, original_config="tiny")
    assert info["kind"] == "superres" and info["diffusion"]["variance"] == "learned_range"


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"weights": Path("/etc/passwd")}, unsafe)  # needs arbitrary unpickling
    with pytest.raises(ValueError, match="refused"):
        load_for_sampling(unsafe)
    foreign = tmp_path / "foreign.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(ValueError, match="not an MM-Diffusion"):
        load_for_sampling(foreign)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_for_sampling(tmp_path / "missing.pt")
