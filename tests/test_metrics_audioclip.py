"""AudioCLIP-FAD: the audio-head port against the ORIGINAL AudioCLIP code, its weights entry, its two profiles.

tests/fixtures/audioclip/ holds the original's outputs on seeded weights of the real shapes (README there);
the weights are rebuilt here from the recipe in support/audioclipkit.py plus the fixture's running stats.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from support import audioclipkit as kit

from avbench.errors import WeightsError
from avbench.metrics import audioclip as ac
from avbench import weights
from avbench.metrics import extract
from avbench.metrics.profiles import AUDIOCLIP_PROFILES

FIXTURE = Path(__file__).parent / "fixtures" / "audioclip"
TOL = 1e-5  # relative to the largest |output|, fp32


@pytest.fixture(scope="module")
def listing() -> dict:
    return json.loads((FIXTURE / "keys.json").read_text())


@pytest.fixture(scope="module")
def fx() -> dict:
    with np.load(FIXTURE / "fixture.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def seeded(listing, fx) -> dict[str, torch.Tensor]:
    sd = kit.seeded_state_dict(listing["shapes"])
    return kit.with_running_stats(sd, listing["shapes"], fx["bn_running_mean"], fx["bn_running_std"])


@pytest.fixture(scope="module")
def head(seeded) -> ac.AudioHead:
    return ac.load_audio_head(seeded)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return kit.seeded_clips()


def _rel(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def _embed(model: ac.AudioHead, x: torch.Tensor, batch_stats: bool) -> np.ndarray:
    before = model.batch_statistics
    model.set_batch_statistics(batch_stats)
    try:
        with torch.inference_mode():
            return model(x).numpy()
    finally:
        model.set_batch_statistics(before)


def test_replayed_weights_and_inputs_are_the_fixtures(listing, seeded, clips):
    # A failure here is the recipe (or torch's generator), not the port.
    import hashlib

    assert kit.tensor_digest(seeded) == listing["weights_digest"]
    assert hashlib.sha256(clips.numpy().tobytes()).hexdigest() == listing["clips_digest"]


def test_state_dict_keys_and_shapes_are_the_originals(listing):
    shapes = {k: list(v.shape) for k, v in ac.AudioHead().state_dict().items()}
    assert shapes == listing["shapes"]
    assert len(shapes) == 370 and listing["shapes"]["fbsp.fc"] == [1025] and listing["shapes"]["fc.weight"] == [1024, 2048]


def test_window_is_scipys_blackman_harris(fx, head):
    np.testing.assert_allclose(head.window.numpy(), fx["window"], rtol=0, atol=1e-7)


def test_log_power_front_end_matches_the_original(fx, head, clips):
    with torch.inference_mode():
        unit = head.log_power_bands(clips[:1])[0, :, ::8, ::4].numpy()
        int16 = head.log_power_bands(clips[:1] * 32768.0)[0, :, ::8, ::4].numpy()
    assert _rel(unit, fx["db_unit_clip0_crop"]) <= TOL
    assert _rel(int16, fx["db_int16_clip0_crop"]) <= TOL


@pytest.mark.parametrize("name,scale", [("eval_int16", 32768.0), ("eval_unit", 1.0)])
def test_eval_mode_matches_the_original(fx, head, clips, name, scale, one_thread):
    got = _embed(head, clips * scale, batch_stats=False)
    assert got.shape == (4, 1024)
    assert _rel(got, fx[name]) <= TOL


def test_batch_statistics_match_the_originals_train_mode(fx, head, clips, one_thread):
    before = {k: v.clone() for k, v in head.state_dict().items()}
    assert _rel(_embed(head, clips, True), fx["train_unit_batch4"]) <= TOL
    assert _rel(_embed(head, clips * 32768.0, True), fx["train_int16_batch4"]) <= TOL
    first3, last3 = _embed(head, clips[:3], True), _embed(head, clips[1:], True)
    assert _rel(first3, fx["train_unit_first3"]) <= TOL and _rel(last3, fx["train_unit_last3"]) <= TOL
    # the quirk itself: clips 1 and 2 embed differently next to different batch-mates
    assert _rel(first3[1:], last3[:2]) > 1e-2
    # unlike the original's train mode, the running statistics are not updated by these passes
    after = head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_batch_of_one_fails_clearly_under_batch_statistics(listing, head, clips, fx, one_thread):
    assert listing["batch_of_one_train_mode"].startswith("ValueError: Expected more than 1 value per channel")
    with pytest.raises(ac.BatchStatisticsError, match="batch of 1 clip"):
        _embed(head, clips[:1], True)
    # in eval mode a clip does not depend on its batch-mates
    assert _rel(_embed(head, clips[2:3] * 32768.0, False), fx["eval_int16"][2:3]) <= TOL


def test_full_training_layout_loads_from_the_audio_prefix(seeded, head, clips, tmp_path):
    full = {f"audio.{k}": v for k, v in seeded.items()}
    full.update({"visual.conv1.weight": torch.zeros(3, 3), "logit_scale_ai": torch.tensor(4.6)})
    path = tmp_path / "AudioCLIP-Full-Training.pt"
    torch.save(full, path)
    loaded = ac.load_audio_head_file(path)
    sd = loaded.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in seeded.items())
    bad = dict(full)
    bad["audio.fc.weight"] = torch.zeros(1024, 1024)
    with pytest.raises(WeightsError, match="wrong shape fc.weight"):
        ac.load_audio_head(bad)
    with pytest.raises(WeightsError, match="missing layer4.2.conv3.weight"):
        ac.load_audio_head({k: v for k, v in full.items() if k != "audio.layer4.2.conv3.weight"})


def test_double_scaling_is_the_originals_float32_arithmetic():
    x = torch.linspace(-1.0, 1.0, 4097)
    y = ac.int16_range_to_unit(x).double()
    ideal = (2 * x.double() + 1) / 65535
    assert abs(float(y[2048]) - 1 / 65535) < 1e-7  # x = 0 → the DC offset
    assert float((y - ideal).abs().max()) < 2e-7  # ~90 dB quieter, within float32 rounding of 1.0
    levels = len(torch.unique(ac.int16_range_to_unit(torch.rand(100_000) * 2 - 1)))
    assert 500 < levels < 1100  # x + 32768 keeps steps of 2⁻⁹ (x < 0) or 2⁻⁸: ~770 levels, ~9.6 bits
    # int16-scale input keeps full resolution
    z = ac.int16_range_to_unit(x * 32768.0).double()
    assert float((z - ((x.double() + 1) * 65536 / 65535 - 1)).abs().max()) < 2e-7


def test_prepare_waveform_first_channel_pad_and_resample():
    stereo = np.stack([np.full(1000, 0.5), np.full(1000, -0.25)], axis=1)
    out = ac.prepare_waveform(stereo, 44_100)
    assert out.shape == (70_560,) and out.dtype == np.float32
    assert (out[:1000] == 0.5).all() and (out[1000:] == 0).all()
    tone = np.sin(2 * np.pi * 1000 * np.arange(16_000 * 2) / 16_000)
    out = ac.prepare_waveform(tone, 16_000)
    assert out.shape == (70_560,) and np.abs(out).max() > 0.9  # 2 s resampled, cut to 1.6 s


# ---- weights entry ----

def test_registered_weights_are_the_issues():
    spec = weights.REGISTRY["audioclip"]
    assert spec.filename == "AudioCLIP-Full-Training.pt"
    assert spec.sha256 == "2441d35b353352c8b1bbfb8f7c687f46314c3d2909e940eaf763b8c17f632c44"
    assert spec.size == 537_302_068
    assert spec.url == "https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1/AudioCLIP-Full-Training.pt"
    assert (spec.flag, spec.env, spec.licence) == ("--audioclip-weights", "AVBENCH_AUDIOCLIP_WEIGHTS", "MIT")
    assert spec.sdist is None  # GitHub only: never fetched behind the user's back


@pytest.fixture
def no_audioclip_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVBENCH_AUDIOCLIP_WEIGHTS", raising=False)


def test_missing_weights_are_one_line_naming_file_url_option_and_env(no_audioclip_env):
    with pytest.raises(WeightsError) as err:
        extract.AudioCLIPFeatures(AUDIOCLIP_PROFILES["audioclip"], None, torch.device("cpu"))
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("AudioCLIP-Full-Training.pt", weights.REGISTRY["audioclip"].url, "--audioclip-weights",
                 "$AVBENCH_AUDIOCLIP_WEIGHTS", "licence MIT"):
        assert part in msg


def test_wrong_file_is_refused_by_size_then_by_checksum(no_audioclip_env, tmp_path, monkeypatch):
    fake = tmp_path / "AudioCLIP-Full-Training.pt"
    fake.write_bytes(b"not the release file")
    monkeypatch.setenv("AVBENCH_AUDIOCLIP_WEIGHTS", str(fake))
    with pytest.raises(weights.WeightsChecksumError, match="537302068"):
        weights.resolve("audioclip")
    # same size as registered (sparse file): the sha256 decides
    with open(fake, "wb") as fh:
        fh.truncate(weights.REGISTRY["audioclip"].size)
    with pytest.raises(weights.WeightsChecksumError, match="expected sha256 2441d35b"):
        weights.resolve("audioclip")
    os.remove(fake)


# ---- the extractor under both profiles ----

@pytest.fixture
def seeded_file(seeded, tmp_path, monkeypatch):
    """The seeded head saved in the full-training layout and registered with its own (real) digest."""
    import dataclasses

    path = tmp_path / "AudioCLIP-Full-Training.pt"
    torch.save({f"audio.{k}": v for k, v in seeded.items()}, path)
    spec = dataclasses.replace(weights.REGISTRY["audioclip"], sha256=weights.sha256_file(path),
                               size=path.stat().st_size)
    monkeypatch.setitem(weights.REGISTRY, "audioclip", spec)
    return path


def test_extractor_profiles_reproduce_the_original(seeded_file, clips, fx, one_thread):
    waves = [c[0].numpy() for c in clips]
    keys = ["d", "c", "b", "a"]  # sorted order reverses the clips: batch composition follows the keys
    mm = extract.AudioCLIPFeatures(AUDIOCLIP_PROFILES["mmdiffusion"], seeded_file, torch.device("cpu"))
    assert mm.model.batch_statistics and mm.sha256 == weights.sha256_file(seeded_file)
    # 4 clips < batch size 8: one BatchNorm batch, as in the fixture (train mode, [-1, 1] fed as int16)
    assert _rel(mm.embed(keys, waves), fx["train_unit_batch4"]) <= TOL
    corrected = extract.AudioCLIPFeatures(AUDIOCLIP_PROFILES["audioclip"], seeded_file, torch.device("cpu"))
    assert not corrected.model.batch_statistics
    assert _rel(corrected.embed(keys, waves), fx["eval_int16"]) <= TOL


def test_mmdiffusion_batches_are_sorted_key_chunks(seeded_file, monkeypatch):
    import dataclasses

    profile = dataclasses.replace(AUDIOCLIP_PROFILES["mmdiffusion"], batch_size=2)
    feats = extract.AudioCLIPFeatures(profile, seeded_file, torch.device("cpu"))
    batches = []

    def record(batch):  # which clips share a BatchNorm batch, in place of the network
        batches.append(sorted(int(b[0]) for b in batch))
        return np.asarray(batch)[:, :1].repeat(ac.EMBED_DIM, axis=1)

    monkeypatch.setattr(extract.AudioCLIPFeatures, "__call__", lambda self, batch: record(batch))
    waves = [np.full(ac.CLIP_SAMPLES, i, np.float32) for i in range(5)]
    keys = ["k3", "k0", "k2", "k1", "k4"]  # sorted: k0,k1 | k2,k3 | k4 → clips (1, 3) | (2, 0) | (4)
    got = feats.embed(keys, waves)
    assert batches == [[1, 3], [0, 2], [4]]
    np.testing.assert_array_equal(got[:, 0], np.arange(5))  # rows come back in input order
    batches.clear()
    order = (2, 0, 4, 3, 1)
    feats.embed([keys[i] for i in order], [waves[i] for i in order])
    assert batches == [[1, 3], [0, 2], [4]]  # the same batch-mates whatever the input order


# ---- `avbench eval --fad-audioclip` ----

@pytest.fixture(scope="module")
def sample_sets(tmp_path_factory):
    from support.evalkit import make_sample_folder

    root = tmp_path_factory.mktemp("aclip_sets")
    return make_sample_folder(root / "a", 3, "a"), make_sample_folder(root / "b", 3, "b", seed0=10)


def test_eval_without_the_file_is_one_line_offline(no_audioclip_env, sample_sets, tmp_path):
    from typer.testing import CliRunner

    from avbench.cli import app
    from avbench.errors import EXIT_BAD_INPUT

    a, b = sample_sets
    res = CliRunner().invoke(app, ["eval", "--samples", str(a), "--reference", str(b), "--fad-audioclip",
                                   "--results-dir", str(tmp_path / "res")])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == EXIT_BAD_INPUT and len(lines) == 1, res.output
    for part in ("AudioCLIP-Full-Training.pt", "releases/download/v0.1", "--audioclip-weights", "AVBENCH_AUDIOCLIP_WEIGHTS"):
        assert part in lines[0]


def test_eval_records_fad_audioclip_with_its_profile(seeded_file, sample_sets, tmp_path, one_thread):
    from avbench.metrics.evaluate import EvalConfig, run_eval
    from avbench.metrics.frechet import feature_stats, frechet_distance
    from avbench.metrics.sources import iter_clips, parse_source

    a, b = sample_sets
    cfg = EvalConfig(samples=str(a), reference=str(b), fad_audioclip=True, audioclip_weights=str(seeded_file),
                     num_clips=3, allow_small=True,
                     use_cache=False, results_dir=str(tmp_path / "res"), device="cpu", workers=0)
    record, _ = run_eval(cfg)
    assert "fad" not in record["scores"]  # never reported under the VGGish name
    proto = record["protocols"]["fad_audioclip"]
    assert proto["profile"]["name"] == "audioclip" and proto["profile"]["scale"] == 10_000.0
    assert proto["weights_sha256"] == weights.sha256_file(seeded_file) and proto["weights_licence"] == "MIT"
    # the score is ×10,000 the Fréchet distance of the extractor's embeddings of the clips eval read
    feats = extract.AudioCLIPFeatures(AUDIOCLIP_PROFILES["audioclip"], seeded_file, torch.device("cpu"))

    def embed(folder):
        got = extract.extract_features(iter_clips(parse_source(str(folder)), 16, want_video=False, want_audio=True,
                                                  limit=3, workers=0), i3d=None, vgg=None, aclip=feats)
        return got.audioclip

    x, y = embed(a), embed(b)
    want = 10_000.0 * frechet_distance(feature_stats(x, 1), feature_stats(y, 1), "eigh")
    assert record["scores"]["fad_audioclip"] == pytest.approx(want, rel=1e-9) and want > 0
    # --protocol mmdiffusion brings the mmdiffusion AudioCLIP profile unless one is named
    mm, _ = run_eval(EvalConfig(**{**cfg.__dict__, "protocol": "mmdiffusion", "name": "mm"}))
    assert mm["protocols"]["fad_audioclip"]["profile"]["name"] == "mmdiffusion"
    assert mm["protocols"]["fad_audioclip"]["profile"]["batch_norm"] == "batch_stats"
    assert mm["scores"]["fad_audioclip"] != pytest.approx(record["scores"]["fad_audioclip"], rel=1e-3)
    named, _ = run_eval(EvalConfig(**{**cfg.__dict__, "protocol": "mmdiffusion", "name": "named",
                                      "fad_audioclip_profile": "audioclip"}))
    assert named["protocols"]["fad_audioclip"]["profile"]["name"] == "audioclip"
