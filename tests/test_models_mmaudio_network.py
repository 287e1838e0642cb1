"""The MMAudio flow network port: released key/shape listings, parity with the original, the loader."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avbench.checkpoint import CheckpointNotFoundError
from avbench.errors import CheckpointError, ModelConfigError, SampleError
from avbench.models.mmaudio.network import VARIANTS, MMAudio, MMAudioConfig, build_network, load_network
from avbench.models.mmaudio.sequences import audio_samples, sequence_lengths
from avbench.models.state_dict import compare_to_listing

# Made by the original MMAudio code (see fixtures/mmaudio/network/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmaudio" / "network"
RELEASED = ["small_16k", "small_44k", "medium_44k", "large_44k", "large_44k_v2"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _listing(variant):
    return json.loads((FIXTURES / "listings" / f"{variant}.json").read_text())


def _rel(a, ref):
    return float((a - ref).abs().max() / ref.abs().max())


def _fixture(name):
    with np.load(FIXTURES / name) as z:
        arrays = {k: z[k] for k in z.files}
    weights = {k[2:]: torch.from_numpy(v).float() * float(arrays["s/" + k[2:]])
               for k, v in arrays.items() if k.startswith("w/")}
    inputs = {k[3:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("in/")}
    outputs = {k[4:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("out/")}
    return weights, inputs, outputs


@pytest.mark.parametrize("variant", RELEASED)
def test_state_dict_matches_the_released_listing(variant):
    with torch.device("meta"):  # up to 1B parameters: shapes only
        sd = MMAudio(VARIANTS[variant]).state_dict()
    listing = _listing(variant)
    assert compare_to_listing(sd, list(listing.items())) == []
    assert sum(v.numel() for v in sd.values()) == sum(int(np.prod(s)) for s in listing.values())


def test_v2_changes_only_input_activations_and_time_features():
    with torch.device("meta"):
        v1, v2 = ({k: list(v.shape) for k, v in MMAudio(VARIANTS[n]).state_dict().items()}
                  for n in ("large_44k", "large_44k_v2"))
    # A SiLU after the clip/text linears moves their FFN one Sequential slot; the time features
    # become hidden_dim wide. Everything else is the same tensor.
    moved = {k: k.replace("_input_proj.1.", "_input_proj.2.") for k in v1
             if k.startswith(("clip_input_proj.1.", "text_input_proj.1."))}
    assert len(moved) == 6
    assert {moved.get(k, k) for k in v1} == set(v2)
    changed = [k for k in v1 if v1[k] != v2[moved.get(k, k)]]
    assert changed == ["t_embed.mlp.0.weight"] and v2["t_embed.mlp.0.weight"] == [896, 896]


@pytest.mark.parametrize("fixture,variant", [("tiny.npz", "tiny_16k"), ("tiny_v2.npz", "tiny_16k_v2")])
def test_parity_with_the_original_fp32(fixture, variant):
    weights, x, ref = _fixture(fixture)
    model = MMAudio(VARIANTS[variant]).eval()
    model.load_state_dict(weights, strict=True)
    got = {}
    with torch.no_grad():
        got["normalized"] = model.normalize(x["latent"])
        got["unnormalized"] = model.unnormalize(x["latent"])
        cond = model.preprocess_conditions(x["clip"], x["sync"], x["text"])
        got["flow_cond"] = model.predict_flow(x["latent"], x["t"], cond)
        got["flow_empty"] = model.predict_flow(x["latent"], x["t"], model.empty_conditions(2))
        neg = model.empty_conditions(2, negative_text=x["negative_text"])
        got["flow_negative"] = model.predict_flow(x["latent"], x["t"], neg)
        got["flow_forward"] = model(x["latent"], x["clip"], x["sync"], x["text"], x["t"])
        model.update_seq_lengths(*sequence_lengths(0.64, 16000))
        short = model.preprocess_conditions(x["clip_short"], x["sync_short"], x["text"])
        got["flow_short"] = model.predict_flow(x["latent_short"], x["t"], short)
    assert set(got) == set(ref)
    for name in ref:
        assert got[name].shape == ref[name].shape, name
        assert _rel(got[name], ref[name]) <= 1e-5, (name, _rel(got[name], ref[name]))
    # The fixture can tell the branches apart: each condition moves the output far above tolerance.
    assert _rel(ref["flow_empty"], ref["flow_cond"]) > 1e-2
    assert _rel(ref["flow_negative"], ref["flow_empty"]) > 1e-2
    assert _rel(ref["flow_short"][:, :20], ref["flow_cond"][:, :20]) > 1e-2


def test_scalar_time_equals_a_batch_of_times():
    torch.manual_seed(0)
    model = _randomised("tiny_16k")
    cond = model.preprocess_conditions(torch.randn(3, 8, 24), torch.randn(3, 16, 16), torch.randn(3, 6, 12))
    latent = torch.randn(3, 32, 20)
    with torch.no_grad():
        a = model.predict_flow(latent, 0.3, cond)
        b = model.predict_flow(latent, torch.full((3,), 0.3), cond)
    assert torch.equal(a, b)


def test_casting_keeps_the_position_tables_in_float32():
    model = _randomised("tiny_16k")
    want = _probe(model)
    rot, freqs = model.latent_rot.clone(), model.t_embed.freqs.clone()
    model.to(torch.bfloat16)
    assert model.latent_rot.dtype == model.t_embed.freqs.dtype == torch.float32
    assert torch.equal(model.latent_rot, rot) and torch.equal(model.t_embed.freqs, freqs)
    got = _probe(model.float())  # a bf16 round trip of the weights only: close, not equal
    assert 0 < _rel(got, want) < 0.05


@pytest.mark.parametrize("duration,rate,want", [
    (8.0, 16000, (250, 64, 192)),  # the original's asserted trained lengths
    (8.0, 44100, (345, 64, 192)),
    (1.0, 16000, (32, 8, 16)),  # tiny_16k's lengths
    (0.64, 16000, (20, 5, 8)),  # one Synchformer window
])
def test_sequence_lengths(duration, rate, want):
    assert sequence_lengths(duration, rate) == want


def test_audio_samples_and_trained_config_agree():
    assert audio_samples(8.0, 16000) == 128000 and audio_samples(8.0, 44100) == 353280
    for name in RELEASED:
        cfg = VARIANTS[name]
        assert sequence_lengths(8.0, cfg.sample_rate) == (cfg.latent_seq_len, cfg.clip_seq_len, cfg.sync_seq_len)


def test_sequence_lengths_refuse_bad_input():
    with pytest.raises(ModelConfigError, match="at least 0.64 s"):
        sequence_lengths(0.5, 16000)
    with pytest.raises(ModelConfigError, match="22050 Hz"):
        sequence_lengths(8.0, 22050)


def _randomised(variant):
    """A tiny model with every tensor non-zero (the training init zeroes the output layer)."""
    model = build_network(variant).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.state_dict().values():  # persistent tensors only: the tables stay derived
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
        model.latent_std.abs_().add_(0.5)
    return model


def _probe(model):
    g = torch.Generator().manual_seed(9)
    clip, sync, text, latent = (torch.randn(s, generator=g) for s in [(1, 8, 24), (1, 16, 16), (1, 6, 12), (1, 32, 20)])
    with torch.no_grad():
        return model(latent, clip, sync, text, torch.tensor([0.5]))


def test_load_network_round_trip_and_cleans_saved_files(tmp_path):
    model = _randomised("tiny_16k")
    path = tmp_path / "mmaudio_tiny.pth"
    torch.save(model.state_dict(), path)
    loaded = load_network("tiny_16k", path)
    assert not loaded.training and loaded.latent_rot.device.type == "cpu"
    assert torch.equal(_probe(loaded), _probe(model))
    # Files saved with the derived tables, or from a DDP wrapper, load the same.
    extra = {"module." + k: v for k, v in model.state_dict().items()}
    extra["module.latent_rot"] = torch.zeros(3)
    extra["module.t_embed.freqs"] = torch.zeros(3)
    torch.save(extra, tmp_path / "ddp.pth")
    assert torch.equal(_probe(load_network("tiny_16k", tmp_path / "ddp.pth")), _probe(model))


def test_load_network_names_the_file_and_the_keys(tmp_path):
    v2 = tmp_path / "v2.pth"
    torch.save(build_network("tiny_16k_v2").state_dict(), v2)
    with pytest.raises(CheckpointError) as e:
        load_network("tiny_16k", v2)
    msg = str(e.value)
    assert "\n" not in msg and str(v2) in msg and "clip_input_proj.2.w1.weight" in msg
    assert "t_embed.mlp.0.weight" in msg and "looks like tiny_16k_v2" in msg

    sd = build_network("tiny_16k").state_dict()
    del sd["final_layer.conv.bias"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"cut\.pth: not an MMAudio tiny_16k network \(1 missing \(first: "
                                              r"final_layer\.conv\.bias\)\); check that"):
        load_network("tiny_16k", tmp_path / "cut.pth")

    with pytest.raises(CheckpointNotFoundError, match="nothing.pth"):
        load_network("tiny_16k", tmp_path / "nothing.pth")
    with pytest.raises(ModelConfigError, match="unknown MMAudio variant 'huge'.*small_16k"):
        load_network("huge", v2)


def test_inputs_of_the_wrong_length_are_refused():
    model = build_network("tiny_16k")
    with pytest.raises(SampleError, match=r"sync features must be \[batch, 16, 16\].*update_seq_lengths"):
        model.preprocess_conditions(torch.zeros(1, 8, 24), torch.zeros(1, 24, 16), torch.zeros(1, 6, 12))
    cond = model.empty_conditions(1)
    with pytest.raises(SampleError, match=r"latents must be \[batch, 32, 20\]"):
        model.predict_flow(torch.zeros(1, 31, 20), 0.0, cond)
    with pytest.raises(ModelConfigError, match="multiple of 8"):
        model.update_seq_lengths(32, 8, 12)


def test_config_refuses_unbuildable_shapes():
    with pytest.raises(ModelConfigError, match="heads of even width"):
        MMAudioConfig(latent_dim=4, clip_dim=4, sync_dim=4, text_dim=4, hidden_dim=30, depth=2, fused_depth=1,
                      num_heads=2, latent_seq_len=8, clip_seq_len=2, sync_seq_len=8)
