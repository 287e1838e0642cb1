"""Training pieces on their own: config files and overrides, EMA, checkpoint files, the batch stream,
and the loop on an in-memory batch source (NaN skipping, in-process exact resume, accumulation)."""

from __future__ import annotations

import math

import pytest
import torch

from avbench.errors import DataError
from avbench.train import checkpointing as ckpt
from avbench.train.batches import BatchStream
from avbench.train.config import ConfigError, TrainConfig, available, load_config
from avbench.train.ema import EMA
from avbench.train.logging import read_log
from avbench.train.loop import NonFiniteLossError, train

# A model small enough for many CPU steps in a test: 8 channels, 4 frames of 64 px, batch 2.
SMALL = ["data.frames=4", "data.batch_size=2", "model.overrides.model_channels=8", "log.every=1",
         "log.preview_every=0", "log.tensorboard=false", "checkpoint.every=1000", "optim.warmup_steps=2"]


def synthetic_epochs(cfg: TrainConfig):
    """Batches that are a pure function of (seed, rank, epoch, index): a stand-in for the shard loader."""
    f, b = cfg.data.frames, cfg.data.batch_size

    def make_epoch(epoch, seed, rank, world):
        torch.rand(1)  # like a DataLoader drawing its base seed: must not shift the training RNG
        g = torch.Generator().manual_seed(seed * 1_000_003 + rank * 1009 + epoch)
        for _ in range(cfg.data.epoch_batches):
            # a learnable signal: a per-sample constant image whose level the audio repeats
            level = torch.rand(b, 1, 1, 1, 1, generator=g) * 2 - 1
            video = level.expand(b, f, 3, 64, 64) + 0.05 * torch.randn(b, f, 3, 64, 64, generator=g)
            audio = level.reshape(b, 1, 1).expand(b, 1, f * 1600).contiguous()
            yield {"video": video, "audio": audio}

    return make_epoch


def test_shipped_configs_load_and_match_the_seed():
    assert {"mmdiffusion-64", "sr-64-256", "tiny", "tiny-sr"} <= set(available().split(", "))
    seed = load_config("mmdiffusion-64")
    assert (seed.kind, seed.model.preset, seed.optim.lr, seed.data.batch_size) == ("mmunet", "seed", 1e-4, 4)
    assert (seed.ema.decay, seed.diffusion.steps, seed.diffusion.schedule) == (0.9999, 1000, "linear")
    assert seed.train.precision == "bf16"
    assert load_config("sr-64-256").kind == "superres"


def test_overrides_parse_toml_values_and_reject_unknown_keys(tmp_path):
    cfg = load_config("tiny", ["optim.lr=2e-4", "optim.betas=[0.9, 0.99]", "model.overrides.model_channels=32",
                               "train.precision=fp16", "data.shards=/some/where"])
    assert cfg.optim.lr == 2e-4 and cfg.optim.betas == [0.9, 0.99]
    assert cfg.model.overrides == {"model_channels": 32} and cfg.train.precision == "fp16"
    assert cfg.data.shards == "/some/where"
    with pytest.raises(ConfigError, match=r"\[optim\] unknown key 'lrr'"):
        load_config("tiny", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="wrong type"):
        load_config("tiny", ["train.max_steps=many"])
    with pytest.raises(ConfigError, match="train.precision = 'fp8' is not one of bf16, fp16, fp32"):
        load_config("tiny", ["train.precision=fp8"])
    with pytest.raises(ConfigError, match="optim.grad_accum = 0 must be at least 1"):
        load_config("tiny", ["optim.grad_accum=0"])
    with pytest.raises(ConfigError, match="no training config named 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlr = [\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_ema_tracks_the_average():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5, start_step=1)
    with torch.no_grad():
        model.weight.fill_(4.0)
    ema.update(model, step=1)  # average: 0.5 * 0 + 0.5 * 4
    assert torch.equal(ema.shadow["weight"], torch.full((1, 2), 2.0))
    ema2 = EMA(model, decay=0.5, start_step=10)
    with torch.no_grad():
        model.weight.fill_(8.0)
    ema2.update(model, step=1)  # before start_step: copy
    assert torch.equal(ema2.shadow["weight"], torch.full((1, 2), 8.0))
    target = torch.nn.Linear(2, 1, bias=False)
    ema.copy_to(target)
    assert torch.equal(target.weight, ema.shadow["weight"])


def test_checkpoints_prune_keep_milestones_and_resume_picks_newest_loadable(tmp_path):
    def state(step):
        return {"format": "avbench-train", "format_version": 2, "train": {"step": step}, "w": torch.ones(2)}

    for step in (10, 20, 30, 40, 50):
        ckpt.save_training_state(ckpt.checkpoint_path(tmp_path, step), state(step))
    removed = ckpt.prune(tmp_path, keep_last=2, milestone_every=20)
    assert sorted(p.name for p in removed) == ["ckpt-00000010.pt", "ckpt-00000030.pt"]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [20, 40, 50]
    # a damaged newest file (not written by us: atomic writes never leave one) is skipped and reported
    ckpt.checkpoint_path(tmp_path, 60).write_bytes(b"not a checkpoint")
    (tmp_path / "checkpoints" / ".tmp-ckpt-00000070.pt.x.pt").write_bytes(b"partial")  # ignored by name
    found = ckpt.find_resume(tmp_path, "auto")
    assert found.path.name == "ckpt-00000050.pt" and found.state["train"]["step"] == 50
    assert len(found.skipped) == 1 and "ckpt-00000060.pt: not a readable torch checkpoint" in found.skipped[0]
    assert ckpt.find_resume(tmp_path / "empty", "auto").path is None
    assert ckpt.find_resume(tmp_path, "none").path is None
    with pytest.raises(FileNotFoundError, match="--resume"):
        ckpt.find_resume(tmp_path, str(tmp_path / "missing.pt"))


def test_atomic_checkpoint_write_leaves_nothing_on_failure(tmp_path):
    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(Exception):
        ckpt.save_training_state(ckpt.checkpoint_path(tmp_path, 5), {"bad": Boom()})
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_batch_stream_resumes_at_its_position():
    def make_epoch(e):
        return [(e, i) for i in range(3)]

    full = BatchStream(make_epoch)
    seq = [next(full) for _ in range(7)]
    assert seq[:4] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    part = BatchStream(make_epoch)
    [next(part) for _ in range(4)]
    resumed = BatchStream(make_epoch, **part.position())
    assert [next(resumed) for _ in range(3)] == seq[4:]
    with pytest.raises(DataError, match="no batch"):
        next(BatchStream(lambda e: []))


def test_batch_stream_survives_a_loader_failure_deterministically():
    def make_epoch(e):
        yield (e, 0)
        if e == 1:
            raise KeyError("json")  # what a loader that cannot step over damaged data does
        yield (e, 1)

    with pytest.warns(UserWarning, match="data loader failed in epoch 1 after 1 batches"):
        stream = BatchStream(make_epoch)
        seq = [next(stream) for _ in range(5)]
    assert seq == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)]
    resumed = BatchStream(make_epoch, epoch=1, index=1)  # a checkpoint taken just before the failure
    with pytest.warns(UserWarning, match="data loader failed"):
        assert [next(resumed) for _ in range(2)] == seq[3:]


def test_rng_state_roundtrip():
    import random

    import numpy as np

    state = ckpt.rng_state()
    a = (torch.rand(3), random.random(), np.random.rand())
    ckpt.set_rng_state(state)
    b = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_nan_loss_is_skipped_counted_and_aborts_after_n_in_a_row(tmp_path, one_thread):
    cfg = load_config("tiny", SMALL + ["train.max_steps=4", "debug.inject_nan_steps=[1, 2]"])
    result = train(cfg, tmp_path / "run", make_epoch=synthetic_epochs(cfg), console=False)
    assert result.step == 4 and result.nonfinite_skipped == 2
    warnings = [r for r in read_log(tmp_path / "run", "warning") if "non-finite" in r["message"]]
    assert [w["step"] for w in warnings] == [1, 2]
    rows = read_log(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["nonfinite_skipped"] == 2
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)  # skipped steps left out
    assert all(torch.isfinite(v).all() for v in torch.load(result.checkpoint, weights_only=True)["model"].values())

    cfg = load_config("tiny", SMALL + ["train.max_steps=4", "train.max_nonfinite=2", "debug.inject_nan_steps=[1]",
                                       "optim.lr=1e30", "optim.grad_clip=0.0", "optim.warmup_steps=0"])
    with pytest.raises(NonFiniteLossError, match="in a row"):
        train(cfg, tmp_path / "run2", make_epoch=synthetic_epochs(cfg), console=False)


def test_resume_in_process_is_bitwise_and_accumulation_runs(tmp_path, one_thread):
    base = SMALL + ["data.epoch_batches=3", "optim.grad_accum=2", "train.max_steps=4"]
    cfg = load_config("tiny", base)
    full = train(cfg, tmp_path / "full", make_epoch=synthetic_epochs(cfg), console=False)
    cfg2 = load_config("tiny", base + ["train.max_steps=2"])
    train(cfg2, tmp_path / "split", make_epoch=synthetic_epochs(cfg2), console=False)
    resumed = train(cfg, tmp_path / "split", make_epoch=synthetic_epochs(cfg), console=False)
    a = torch.load(full.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    assert a["data"] == b["data"] == {"epoch": 2, "index": 2, "ranks": [{"epoch": 2, "index": 2}]}  # 8 over epochs of 3
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]
    log = read_log(tmp_path / "split", kind=None)
    assert any(r["type"] == "start" and r["resumed_from"] for r in log)


def test_resume_refuses_a_different_model(tmp_path, one_thread):
    cfg = load_config("tiny", SMALL + ["train.max_steps=1"])
    train(cfg, tmp_path / "run", make_epoch=synthetic_epochs(cfg), console=False)
    other = load_config("tiny", SMALL + ["train.max_steps=2", "model.overrides.model_channels=16"])
    with pytest.raises(ValueError, match="trained with model"):
        train(other, tmp_path / "run", make_epoch=synthetic_epochs(other), console=False)
    # the weights would load at another clip length, so the data shape is checked explicitly
    longer = load_config("tiny", SMALL + ["train.max_steps=2", f"data.frames={cfg.data.frames * 2}"])
    with pytest.raises(ValueError, match="trained with data.frames"):
        train(longer, tmp_path / "run", make_epoch=synthetic_epochs(longer), console=False)


def test_superres_tiny_trains_and_exports(tmp_path, one_thread):
    from avbench.models.checkpoint import load_for_sampling

    cfg = load_config("tiny-sr", ["train.max_steps=2", "data.frames=2", "data.sr_frames_per_clip=1", "log.every=1",
                                  "log.preview_every=2", "log.preview_sampler_steps=2", "log.tensorboard=false",
                                  "data.batch_size=1"])
    result = train(cfg, tmp_path / "sr", make_epoch=synthetic_epochs(cfg), console=False)
    assert result.step == 2
    rows = read_log(tmp_path / "sr")
    assert {"loss", "loss_mse", "loss_vb", "loss_q0", "grad_norm", "lr"} <= set(rows[-1])
    model, info = load_for_sampling(tmp_path / "sr" / "model.pt")
    assert info["kind"] == "superres" and info["diffusion"]["learned_sigma"] and info["weights"] == "ema"
    assert (tmp_path / "sr" / "previews" / "step-00000002-0.mp4").stat().st_size > 0



@pytest.mark.parametrize("sets", [["train.precision=\"bf16\""], ["train.precision=\"fp16\""],
                                  ["train.activation_checkpointing=true"]])
def test_precisions_and_activation_checkpointing_train(tmp_path, one_thread, sets):
    # CPU half-precision kernels are slow: batch 1
    cfg = load_config("tiny", SMALL + ["train.max_steps=1", "train.precision=\"fp32\"",
                                       "data.batch_size=1", *sets])
    result = train(cfg, tmp_path / "run", make_epoch=synthetic_epochs(cfg), console=False)
    state = torch.load(result.checkpoint, weights_only=True)
    assert result.step == 1 and state["config"]["train"] == cfg.to_dict()["train"]
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())  # fp32 master
    if cfg.train.precision == "fp16":
        assert state["scaler"]["scale"] > 0  # the GradScaler state travels with the checkpoint


def test_flop_count_for_mfu(one_thread):
    from avbench.train.objectives import build_model, make_objective

    cfg = load_config("tiny", SMALL)
    cfg.data.batch_size = 1  # FlopCounterMode is slow on the CPU
    model, model_cfg = build_model(cfg)
    flops = make_objective(cfg, model_cfg, torch.device("cpu")).count_flops(model, None)
    assert flops > 0 and all(p.grad is None for p in model.parameters())
