"""Training checkpoints as files: reproducible bytes, integrity on resume, leftovers of a killed write,
changed optimizer settings on resume, and fp16 overflow steps counted apart from NaN losses.

A 2-frame 32 px MM-UNet with 8 channels keeps every step well under a second on one CPU core.
"""

from __future__ import annotations

import pytest
import torch

from avbench import checkpoint as fmt
from avbench.errors import EXIT_BAD_INPUT, CheckpointError
from avbench.io import sha256_file
from avbench.models.checkpoint import load_for_sampling
from avbench.train import checkpointing as ckpt
from avbench.train.config import load_config
from avbench.train.logging import read_log
from avbench.train.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.frames=2", "data.size=32", "data.batch_size=1", "model.overrides.model_channels=8", "log.every=1",
         "log.preview_every=0", "log.tensorboard=false", "optim.warmup_steps=2", "checkpoint.every=1",
         "checkpoint.keep_last=5", "data.epoch_batches=4"]


def epochs(cfg):
    """Batches that are a pure function of (seed, rank, epoch, index)."""
    f, b, s = cfg.data.frames, cfg.data.batch_size, cfg.data.size

    def make_epoch(epoch, seed, rank, world):
        g = torch.Generator().manual_seed(seed * 1_000_003 + rank * 1009 + epoch)
        for _ in range(cfg.data.epoch_batches):
            level = torch.rand(b, 1, 1, 1, 1, generator=g) * 2 - 1
            yield {"video": level.expand(b, f, 3, s, s) + 0.05 * torch.randn(b, f, 3, s, s, generator=g),
                   "audio": level.reshape(b, 1, 1).expand(b, 1, f * 1600).contiguous()}

    return make_epoch


def _train(run, *sets, resume="auto"):
    cfg = load_config("tiny", SMALL + list(sets))
    return train(cfg, run, make_epoch=epochs(cfg), console=False, resume=resume)


def _flip_inside_a_tensor(path, tensor):
    raw = bytearray(path.read_bytes())
    at = raw.find(tensor.numpy().tobytes())
    assert at > 0
    raw[at + 1] ^= 0x10
    path.write_bytes(bytes(raw))


def test_identical_runs_write_identical_bytes(tmp_path):
    for name in ("a", "b"):
        _train(tmp_path / name, "train.max_steps=2")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.pt"))
    assert [str(p) for p in files] == ["checkpoints/ckpt-00000001.pt", "checkpoints/ckpt-00000002.pt",
                                       "model.pt", "original/ema_0.99_000002.pt", "original/model000002.pt"]
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # what `avbench sample` records in samples.json as checkpoint_sha256
    shas = {load_for_sampling(tmp_path / n / "model.pt")[1]["sha256"] for n in ("a", "b")}
    assert shas == {sha256_file(tmp_path / "a" / "model.pt")}
    # still a plain weights-only file, in the states layout
    state = torch.load(tmp_path / "a" / "checkpoints" / "ckpt-00000002.pt", weights_only=True)
    assert state["format"] == fmt.TRAIN_FORMAT and state["kind"] == "mmunet" and state["train"]["step"] == 2
    assert {"model", "ema", "optimizer", "scheduler", "scaler", "train", "data", "rng"} <= set(state)


def test_damaged_checkpoints_fall_back_refuse_and_report_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    _train(run, "train.max_steps=2")
    newest = ckpt.checkpoint_path(run, 2)
    weight = torch.load(newest, weights_only=True)["model"]["time_embed.0.weight"]
    _flip_inside_a_tensor(newest, weight)
    # only the newest is bad: resume from the previous one and say so
    result = _train(run, "train.max_steps=3")
    assert result.step == 3
    starts = read_log(run, "start")
    assert starts[-1]["resumed_from"].endswith("ckpt-00000001.pt")
    notes = [w["message"] for w in read_log(run, "warning")]
    assert any("ckpt-00000002.pt: damaged checkpoint" in m and "CRC-32" in m for m in notes), notes
    assert any("resumed from the older checkpoint" in m for m in notes)
    assert "ckpt-00000002.pt: damaged checkpoint" in capsys.readouterr().err

    # every checkpoint unreadable: refuse (exit 2), name the fresh-start option, overwrite nothing
    before = {p: p.read_bytes() for _, p in ckpt.list_checkpoints(run)}
    for p in before:
        p.write_bytes(p.read_bytes()[:100])
    damaged = {p: p.read_bytes() for p in before}
    with pytest.raises(CheckpointError, match=r"none of the 3 checkpoints is readable.*--resume none") as e:
        _train(run, "train.max_steps=4")
    assert e.value.exit_code == EXIT_BAD_INPUT and "\n" not in str(e.value)
    assert {p: p.read_bytes() for p in before} == damaged
    # --resume PATH on a truncated file: one line naming it
    with pytest.raises(CheckpointError, match=r"ckpt-00000003.pt: not a readable torch checkpoint") as e:
        _train(run, "train.max_steps=4", resume=str(ckpt.checkpoint_path(run, 3)))
    assert "\n" not in str(e.value)
    # the fresh start the message names works
    assert _train(run, "train.max_steps=1", resume="none").step == 1


def test_temp_files_of_a_killed_write_are_removed_on_start(tmp_path):
    run = tmp_path / "run"
    _train(run, "train.max_steps=1")
    leftovers = [run / "checkpoints" / ".tmp-ckpt-00000002.pt.k3j2x.pt", run / ".tmp-model.pt.a8f.pt",
                 run / "original" / ".tmp-model000002.pt.zz.pt"]
    for p in leftovers:
        p.write_bytes(b"")  # what a kill between mkstemp and the first write leaves
    _train(run, "train.max_steps=2")
    assert not any(p.exists() for p in leftovers)
    cleanup = read_log(run, "cleanup")
    assert sorted(cleanup[-1]["removed"]) == sorted(str(p) for p in leftovers)


def test_changed_optim_settings_are_applied_on_resume_and_logged(tmp_path):
    run = tmp_path / "run"
    _train(run, "train.max_steps=2", "optim.lr=1e-3")
    result = _train(run, "train.max_steps=4", "optim.lr=5e-4", "optim.weight_decay=0.01",
                    "optim.betas=[0.8, 0.99]")
    state = torch.load(result.checkpoint, weights_only=True)
    group = state["optimizer"]["param_groups"][0]
    assert (group["initial_lr"], group["weight_decay"], tuple(group["betas"])) == (5e-4, 0.01, (0.8, 0.99))
    assert group["lr"] == pytest.approx(5e-4)  # warmup (2 steps) is over: the new base rate itself
    assert state["scheduler"]["base_lrs"] == [5e-4] and state["scheduler"]["last_epoch"] == 4
    note = next(w["message"] for w in read_log(run, "warning") if "optim settings" in w["message"])
    assert "optim.lr 0.001 -> 0.0005" in note and "optim.weight_decay 0.0 -> 0.01" in note
    assert "optim.betas [0.9, 0.999] -> [0.8, 0.99]" in note and "eps" not in note


def test_fp16_overflow_is_not_a_nonfinite_loss(tmp_path):
    # A loss scale of 2**20 overflows fp16 gradients until the GradScaler has halved it a few times.
    # With max_nonfinite=1, counting those steps as NaN losses would abort at the first one.
    result = _train(tmp_path / "run", "train.max_steps=2", 'train.precision="fp16"', "train.fp16_init_scale=1048576.0",
                    "train.max_nonfinite=1", "checkpoint.every=1000")
    assert result.step == 2 and result.nonfinite_skipped == 0 and result.overflow_skipped >= 1
    overflows = read_log(tmp_path / "run", "overflow")
    assert len(overflows) == result.overflow_skipped
    assert [o["loss_scale"] for o in overflows[:2]] == [2.0 ** 20, 2.0 ** 19][: len(overflows[:2])]
    rows = read_log(tmp_path / "run")
    assert rows[-1]["overflow_skipped"] == result.overflow_skipped and rows[-1]["nonfinite_skipped"] == 0
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["train"]["overflow_total"] == result.overflow_skipped
    assert state["scaler"]["scale"] == 2.0 ** 20 / 2 ** result.overflow_skipped

    # a NaN loss under fp16 is still a non-finite step, and still aborts
    with pytest.raises(Exception, match="in a row had a NaN/inf loss"):
        _train(tmp_path / "nan", "train.max_steps=2", 'train.precision="fp16"', "train.max_nonfinite=1",
               "train.fp16_init_scale=1.0", "debug.inject_nan_steps=[0]")


def test_cli_resume_from_a_truncated_file_is_one_line_exit_2(demo_dataset, tmp_path):
    from typer.testing import CliRunner

    from avbench.cli import app

    bad = tmp_path / "ckpt-00000005.pt"
    bad.write_bytes(b"PK\x03\x04" + bytes(200))  # the first bytes of a zip, then nothing
    res = CliRunner().invoke(app, ["train", "baseline", "--data", str(demo_dataset), "--config", "tiny",
                                   "--out", str(tmp_path / "run"), "--resume", str(bad), "--no-progress",
                                   "--set", "data.workers=0", "--set", "log.tensorboard=false"])
    assert res.exit_code == EXIT_BAD_INPUT, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "ckpt-00000005.pt: not a readable torch checkpoint" in lines[0], res.output
    assert "Traceback" not in res.output


def test_checkpoint_of_the_previous_layout_resumes(tmp_path):
    """A run checkpointed by the code before the `states` dict (flat keys, kind "baseline") continues."""
    run = tmp_path / "run"
    _train(run, "train.max_steps=2")
    new = torch.load(ckpt.checkpoint_path(run, 2), weights_only=True)
    old = {k: new[k] for k in ("model", "ema", "optimizer", "scheduler", "scaler", "rng", "model_config",
                               "diffusion", "world_size")}
    old.update(format="avbench-train-v1", kind="baseline", step=2, nonfinite_total=0,
               config={**new["config"], "kind": "baseline",  # written before diffusion.rescale_vb existed
                       "diffusion": {k: v for k, v in new["config"]["diffusion"].items() if k != "rescale_vb"}},
               data={"epoch": new["data"]["epoch"], "index": new["data"]["index"]}, data_ranks=new["data"]["ranks"])
    for _, p in ckpt.list_checkpoints(run):
        p.unlink()
    torch.save(old, ckpt.checkpoint_path(run, 2))
    resumed = _train(run, "train.max_steps=3")
    straight = _train(tmp_path / "straight", "train.max_steps=3")
    a = torch.load(resumed.checkpoint, weights_only=True)
    b = torch.load(straight.checkpoint, weights_only=True)
    assert a["train"] == b["train"] and a["data"] == b["data"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
