"""`avbench train` end to end on the demo shards (the shared `demo_dataset` fixture): the CLI run with a
preview and a checkpoint that `avbench sample` loads, exact resume after a real SIGTERM, a 2-process gloo
run through `--nproc 2`, and a corrupt shard met mid-run.

Sizes are cut down (4 frames, 8 channels, batch 2) so each step takes well under a second on a CPU core;
the full 100-step tiny command and its time are in docs/training.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from typer.testing import CliRunner

from avbench.cli import app
from avbench.train.logging import read_log

FAST = ["data.frames=4", "data.batch_size=2", "model.overrides.model_channels=8", "data.workers=0",
        "log.tensorboard=false"]


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _env() -> dict[str, str]:
    # one intra-op thread per process: identical numerics across the runs compared, no oversubscription
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _avbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "avbench", *args]


def test_cli_tiny_run_learns_writes_checkpoint_preview_and_samples(demo_dataset, tmp_path, one_thread):
    run = tmp_path / "run"
    args = ["train", "baseline", "--data", str(demo_dataset), "--config", "tiny", "--out", str(run),
            "--max-steps", "30", "--no-progress", *_sets(FAST + ["log.every=5", "log.preview_every=30",
                                                                 "log.preview_sampler_steps=3",
                                                                 "log.tensorboard=true", "checkpoint.every=15"])]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = read_log(run)
    assert [r["step"] for r in rows] == list(range(5, 31, 5))
    for key in ("loss", "loss_video", "loss_audio", "loss_q0", "loss_q3", "grad_norm", "lr", "samples_per_s",
                "data_wait_frac"):
        assert key in rows[-1], key
    first, last = rows[0]["loss"], min(r["loss"] for r in rows[-2:])
    assert last < 0.85 * first, [r["loss"] for r in rows]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-00000015.pt", "ckpt-00000030.pt"]
    assert (run / "previews" / "step-00000030-0.mp4").stat().st_size > 0
    assert list((run / "tb").glob("events.out.tfevents.*"))
    saved = (run / "config.toml").read_text()
    assert "model_channels = 8" in saved and 'preset = "tiny"' in saved

    import av

    with av.open(str(run / "previews" / "step-00000030-0.mp4")) as c:
        kinds = sorted(s.type for s in c.streams)
        frames = sum(1 for _ in c.decode(video=0))
    assert kinds == ["audio", "video"] and frames == 4

    out = tmp_path / "samples"
    res = CliRunner().invoke(app, ["sample", "--checkpoint", str(run / "model.pt"), "--out", str(out),
                                   "--num-samples", "1", "--batch-size", "1", "--sampler", "ddim", "--steps", "3",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "video" / "0.mp4").exists() and (out / "audio" / "0.wav").exists()
    # the original-layout export loads too (bare EMA state dict, settings given by the user)
    from avbench.models.checkpoint import load_for_sampling

    original = next((run / "original").glob("ema_0.99_*.pt"))
    cfg = json.loads(json.dumps(torch.load(run / "model.pt", weights_only=True)["config"]))
    model, info = load_for_sampling(original, original_config=cfg, diffusion_steps=1000)
    assert info["source"] == "mm-diffusion" and info["kind"] == "mmunet"


def _wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}): {proc.stderr.read()}")
        try:
            if any(r["step"] >= step for r in read_log(run)):
                return
        except ValueError:  # caught a line half-written: look again
            pass
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def test_sigterm_then_resume_gives_bitwise_identical_weights(demo_dataset, tmp_path, one_thread):
    from avbench.train.config import load_config
    from avbench.train.loop import train

    steps = 20  # the protocol: 20 straight vs ~10 + SIGTERM + resume to 20
    sets = FAST + ["log.every=1", "log.preview_every=0", "checkpoint.every=100", "data.epoch_batches=3",
                   "model.overrides.dropout=0.1",  # dropout: the per-step RNG must be restored too
                   "data.workers=2"]  # loader workers must survive the signal sent to the process group
    run = tmp_path / "killed"
    cmd = _avbench("train", "baseline", "--data", str(demo_dataset), "--config", "tiny", "--out", str(run),
                   "--max-steps", str(steps), "--no-progress", *_sets(sets))
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _wait_for_step(run, 10, proc)
    os.killpg(proc.pid, signal.SIGTERM)  # as a shell or SLURM does: the trainer and its loader workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint" in err and "--resume auto" in err
    stopped = read_log(run, "preempted")
    assert len(stopped) == 1 and 10 <= stopped[0]["step"] < steps
    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["resumed_from"] is not None for r in read_log(run, "start")] == [False, True]

    # the uninterrupted reference, in this process (one thread as well)
    cfg = load_config("tiny", [f"data.shards={json.dumps(str(demo_dataset))}", f"train.max_steps={steps}", *sets])
    ref = train(cfg, tmp_path / "straight", console=False)
    a = torch.load(ref.checkpoint, weights_only=True)
    b = torch.load(run / "checkpoints" / f"ckpt-{steps:08d}.pt", weights_only=True)
    assert a["train"]["step"] == b["train"]["step"] == steps and a["data"] == b["data"]
    for key in ("model", "ema"):
        diff = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not diff, f"{key}: {len(diff)} tensors differ, e.g. {diff[:3]}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_two_gloo_processes_train_in_step_and_only_rank0_writes(demo_dataset, tmp_path):
    run = tmp_path / "ddp"
    cmd = _avbench("train", "baseline", "--data", str(demo_dataset), "--config", "tiny", "--out", str(run),
                   "--nproc", "2", "--max-steps", "4", "--no-progress",
                   *_sets(FAST + ["log.every=2", "log.preview_every=0", "checkpoint.every=2", "data.epoch_batches=3",
                                  "train.device=\"cpu\""]))
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((run / "result.json").read_text())
    assert result["batches_per_rank"] == [4, 4] and result["step"] == 4
    starts = read_log(run, "start")
    assert len(starts) == 1 and starts[0]["world_size"] == 2
    assert [r["step"] for r in read_log(run)] == [2, 4]  # one writer: no duplicated lines
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    ck = torch.load(run / "checkpoints" / "ckpt-00000004.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2  # both ranks' RNG states, gathered to rank 0
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["checkpoints", "config.toml", "log.jsonl", "model.pt", "original", "result.json"])


def test_corrupt_shard_is_skipped_with_a_logged_warning(demo_dataset, tmp_path, one_thread):
    from avbench.train.config import load_config
    from avbench.train.loop import train

    root = tmp_path / "data"
    shutil.copytree(demo_dataset / "shards", root / "shards")
    index = json.loads((root / "shards" / "index.json").read_text())
    train_tars = [r["path"] for r in index["shards"] if r["split"] == "train" and r["size"] == 64]
    victim = root / "shards" / train_tars[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # a shard cut short (an interrupted copy)
    # another one with a zeroed member header: tar reading stops there and a sample lacks its .json
    damaged = root / "shards" / train_tars[1]
    import tarfile

    with tarfile.open(damaged) as tf:
        header = tf.getmembers()[1].offset
    raw = bytearray(damaged.read_bytes())
    raw[header: header + 512] = bytes(512)
    damaged.write_bytes(bytes(raw))
    cfg = load_config("tiny", [f"data.shards={json.dumps(str(root))}", "train.max_steps=3", "log.every=1",
                               "log.preview_every=0", "data.epoch_batches=8", *FAST])
    result = train(cfg, tmp_path / "run", console=False)
    assert result.step == 3
    warnings = read_log(tmp_path / "run", "warning")
    assert any(victim.name in w["message"] for w in warnings), warnings
    assert any(damaged.name in w["message"] for w in warnings), warnings
