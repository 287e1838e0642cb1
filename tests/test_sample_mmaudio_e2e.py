"""End-to-end parity of MMAudio video→audio with the ORIGINAL code's demo path (tests/fixtures/mmaudio/e2e).

The original (hkchengrex/MMAudio 974010a) ran `load_video` → `generate()` → vocoder on a 200 fps source
with the tiny-16k files; here `load_bundle("tiny-16k")` + `generate_audio` run on the same frames and the
same files. Two ways: teacher-forced (each stage is handed the original's output of the stage before,
so each stage is held to 1e-5 on its own) and free-running (the whole chain from the frames alone).
The 44.1 kHz path (v1-44-style VAE, BigVGAN-v2 as diffusers' MMAudioVocoder) is checked the same way.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support.mmaudio_e2e import (
    E2E_DIR,
    SOURCE_REPEAT,
    STAGES,
    VOCODER44_FILE,
    StageTap,
    bundle_44k,
    file_digests,
    load_fixture,
    relative_error,
    source_frames,
    tensor_digest,
    write_e2e44_vae,
    write_e2e_weights,
)

from avbench.sample.mmaudio import generate_audio, load_bundle

TOL = 1e-5
# Free-running, rounding-level differences of the encoders (~5e-7) are amplified by 25 guided steps and by
# the random tiny VAE and vocoder (measured: latent 3e-6, mel 6e-6, wave 3e-5); each stage alone is
# within TOL in the teacher-forced test, so only the chain's tail gets a looser bound.
FREE_TOL = {"mel": 2e-5, "wave": 1e-4}

META, ARRAYS = load_fixture()
CASES = {c["name"]: c for c in META["cases"]}
FPS = META["source"]["fps"]
DURATION = META["source"]["duration_s"]


@pytest.fixture(scope="module")
def weight_paths(tmp_path_factory):
    paths = write_e2e_weights(tmp_path_factory.mktemp("mmaudio_e2e"))
    recorded = {role: w.get("tensors_sha256", w.get("sha256")) for role, w in META["weights"].items()}
    changed = sorted(role for role, digest in file_digests(paths).items() if recorded[role] != digest)
    assert not changed, (f"tiny-16k weights for {changed} differ from those the original ran with: the recipe in "
                         "avbench.sample.tiny / tests/support/mmaudio_e2e.py changed; regenerate "
                         "tests/fixtures/mmaudio/e2e as its README says")
    return {role: str(p) for role, p in paths.items()}


@pytest.fixture
def bundle(weight_paths, one_thread):
    return load_bundle("tiny-16k", paths=weight_paths)


def _run(bundle, monkeypatch, case, *, feed: bool, frames: np.ndarray | None = None, **overrides):
    prompt_ids, negative_ids = META["tokens"][case["name"]]
    ref = {k: ARRAYS[f"{case['name']}/{k}"] for k in STAGES}
    tap = StageTap(bundle, monkeypatch, prompt_ids, negative_ids, feed=ref if feed else None)
    # the default case leaves steps and CFG to generate_audio's defaults: they must be the demo's (25, 4.5)
    steps, cfg = (None, None) if case["name"] == "default" else (case["steps"], case["cfg"])
    kwargs = {"steps": steps, "cfg_strength": cfg, **overrides}
    try:
        frames = source_frames(ARRAYS) if frames is None else frames
        wave, rate, info = generate_audio(bundle, frames, FPS, case["prompt"], DURATION, case["seed"],
                                          negative_prompt=case["negative"], **kwargs)
    finally:
        tap.close()
    return tap, wave, rate, info


def _stage_errors(tap, case, wave) -> dict[str, float]:
    missing = [k for k in STAGES if k not in tap.got]
    assert not missing, f"generate_audio never produced stage(s) {missing}; StageTap no longer sees them"
    errors = {k: relative_error(tap.got[k], ARRAYS[f"{case['name']}/{k}"]) for k in STAGES}
    ref_wave = ARRAYS[f"{case['name']}/wave"]  # the original vocodes all latents: 16384 samples for 1 s
    errors["wave"] = relative_error(wave, ref_wave[:wave.shape[0]])
    return errors


def _first_over(errors: dict[str, float], tol: dict[str, float]) -> str | None:
    return next((k for k, e in errors.items() if not e <= tol[k]), None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_stage_matches_the_original_on_its_inputs(bundle, monkeypatch, name):
    case = CASES[name]
    tap, wave, rate, info = _run(bundle, monkeypatch, case, feed=True)
    assert rate == 16000 and wave.shape == (16000,)
    assert (info["steps"], info["cfg_strength"]) == (case["steps"], case["cfg"])
    prompt_ids, negative_ids = META["tokens"][name]
    assert tap.tokens == [prompt_ids, negative_ids], "CLIP token ids differ from open_clip's on the tiny merges"
    # 200 fps with every frame shown twice: both frame rules pick the same pictures (README); same pictures here
    assert [i // SOURCE_REPEAT for i in info["clip_frames"]["indices"]] == META["source"]["original_clip_pictures"]
    assert [i // SOURCE_REPEAT for i in info["sync_frames"]["indices"]] == META["source"]["original_sync_pictures"]
    errors = _stage_errors(tap, case, wave)
    stage = _first_over(errors, dict.fromkeys(errors, TOL))
    assert stage is None, f"stage {stage!r} drifted from the original: relative errors {errors}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_frames_to_waveform_match_the_original(bundle, monkeypatch, name):
    case = CASES[name]
    tap, wave, _, _ = _run(bundle, monkeypatch, case, feed=False)
    errors = _stage_errors(tap, case, wave)
    stage = _first_over(errors, {k: FREE_TOL.get(k, TOL) for k in errors})
    assert stage is None, f"first stage off the original: {stage!r}; relative errors {errors}"


def test_the_comparison_catches_an_ignored_cfg(bundle, monkeypatch):
    # cfg_strength 1 is the conditional flow alone (what ignoring CFG gives): the latent must be far off.
    tap, wave, _, _ = _run(bundle, monkeypatch, CASES["default"], feed=True, cfg_strength=1.0)
    errors = _stage_errors(tap, CASES["default"], wave)
    assert errors["clip_f"] <= TOL and errors["x1"] > 1e3 * TOL, errors


def test_the_comparison_catches_a_one_frame_shift(bundle, monkeypatch):
    # the same clip one stored picture later: the CLIP and Synchformer features must be far off
    later = np.roll(source_frames(ARRAYS), -2, axis=0)
    tap, _, _, _ = _run(bundle, monkeypatch, CASES["negative"], feed=False, frames=later)
    errors = {k: relative_error(tap.got[k], ARRAYS[f"negative/{k}"]) for k in ("clip_f", "sync_f", "text_f")}
    assert errors["text_f"] <= TOL and errors["clip_f"] > 1e3 * TOL and errors["sync_f"] > 1e3 * TOL, errors


# ---- 44.1 kHz: the same network at the 44.1 kHz latent rate, a v1-44-style VAE, BigVGAN-v2 in diffusers ----

META44 = json.loads((E2E_DIR / "e2e44.json").read_text(encoding="utf-8"))
with np.load(E2E_DIR / "e2e44.npz") as _z:
    ARRAYS44 = {k.split("/", 1)[1]: _z[k] for k in _z.files}


@pytest.fixture
def bundle44(bundle, tmp_path):
    pytest.importorskip("diffusers")
    vae_path = write_e2e44_vae(tmp_path)
    vae_sd = torch.load(vae_path, map_location="cpu", weights_only=True)
    raw = torch.load(VOCODER44_FILE, map_location="cpu", weights_only=True)["generator"]
    assert (tensor_digest(vae_sd), tensor_digest(raw)) == (META44["vae_tensors_sha256"], META44["vocoder_tensors_sha256"]), (
        "the 44.1 kHz tiny VAE recipe or the committed BigVGAN-v2 file changed; regenerate tests/fixtures/mmaudio/e2e")
    return bundle_44k(bundle, vae_path, tmp_path)


@pytest.mark.parametrize("feed", [True, False], ids=["teacher-forced", "free-running"])
def test_the_44k_path_matches_the_original(bundle44, monkeypatch, feed):
    case = META44["case"]
    prompt_ids, negative_ids = META["tokens"][case["name"]]
    tap = StageTap(bundle44, monkeypatch, prompt_ids, negative_ids, feed={k: ARRAYS44[k] for k in STAGES} if feed else None)
    try:
        wave, rate, info = generate_audio(bundle44, source_frames(ARRAYS), FPS, case["prompt"], DURATION, case["seed"],
                                          negative_prompt=case["negative"])
    finally:
        tap.close()
    assert rate == 44100 and wave.shape == (44100,)
    assert list(info["sequence_lengths"].values()) == META44["sequence_lengths"]
    errors = {k: relative_error(tap.got[k], ARRAYS44[k]) for k in STAGES}
    errors["wave"] = relative_error(wave, ARRAYS44["wave"][:wave.shape[0]])
    tol = dict.fromkeys(errors, TOL) if feed else {k: FREE_TOL.get(k, TOL) for k in errors}
    stage = _first_over(errors, tol)
    assert stage is None, f"44.1 kHz: stage {stage!r} off the original; relative errors {errors}"
