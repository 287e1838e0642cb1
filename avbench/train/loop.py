"""The training loop for both models, readable top to bottom.

One optimizer step = `grad_accum` micro-batches from every rank. Each step's randomness (timesteps,
noise, dropout, window shifts) comes from the torch RNG reseeded from (seed, rank, step), and the data
stream's position is checkpointed, so a resumed run recomputes exactly the steps an uninterrupted run
would have: on the CPU the weights are bitwise identical.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avbench import checkpoint as fmt
from avbench.errors import ConfigError, TrainError
from avbench.io import atomic_write_json, atomic_write_text
from avbench.train import checkpointing as ckpt
from avbench.train import distributed as D
from avbench.train.batches import BatchStream, derive_seed
from avbench.train.config import TrainConfig, dump_toml
from avbench.train.data import shard_epochs
from avbench.train.ema import EMA
from avbench.train.export import export_original_layout, export_sampling_checkpoint
from avbench.train.logging import NullLogger, RunLogger
from avbench.train.objectives import Objective, build_model, diffusion_config, make_objective
from avbench.train.preview import write_preview
from avbench.train.states import (
    DataState,
    RngState,
    TrainState,
    apply_optim_config,
    checkpoint_meta,
    implementation_flags,
    save_states,
)
from avbench.train.throughput import StepTimer, peak_flops

# fp16: the GradScaler halves its scale at each overflow, from 2**16 to fp16's smallest normal number
# in 40 halvings; far more overflows in a row than that means the scale collapsed, not a transient.
MAX_OVERFLOWS_IN_A_ROW = 64


class NonFiniteLossError(TrainError):
    """Too many optimizer steps in a row had a NaN/inf loss or gradient."""


@dataclass
class TrainResult:
    step: int
    preempted: bool = False
    signal: int | None = None
    checkpoint: str | None = None
    nonfinite_skipped: int = 0
    overflow_skipped: int = 0  # fp16 steps the GradScaler skipped for an inf/NaN gradient (not a NaN loss)
    batches_per_rank: list[int] = field(default_factory=list)


def train(cfg: TrainConfig, run: str | Path, *, resume: str = "auto", make_epoch=None,
          console: bool = True) -> TrainResult:
    """Train `cfg` into the run directory `run`. Works alone or under torchrun (rank/world from env).

    `resume`: "auto" (newest readable checkpoint in RUN; refuses when all are unreadable), "none"
    (fresh start) or a checkpoint path. `make_epoch(epoch, seed, rank, world) -> iterable of batches`
    replaces the shard loader (tests).
    """
    run = Path(run)
    dist = D.init_distributed(cfg.train.device)
    stop = ckpt.StopFlag().install()
    try:
        return _train(cfg, run, dist, stop, resume=resume, make_epoch=make_epoch, console=console)
    finally:
        stop.restore()
        D.cleanup(dist)


def _train(cfg: TrainConfig, run: Path, dist: D.DistInfo, stop: ckpt.StopFlag, *, resume: str,
           make_epoch, console: bool) -> TrainResult:
    device = dist.device
    torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
    torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    torch.manual_seed(derive_seed(cfg.train.seed, "init"))  # same initial weights on every rank

    # ---- model, EMA, optimizer, schedule of the learning rate, data --------------------------------
    model, model_cfg = build_model(cfg)
    model.to(device)
    ema = EMA(model, cfg.ema.decay, cfg.ema.start_step)
    use_fused = cfg.optim.fused and device.type == "cuda"
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay, fused=use_fused or None, foreach=None if use_fused else True,
    )
    warmup = max(cfg.optim.warmup_steps, 0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[cfg.train.precision]
    scaler = torch.amp.GradScaler(device.type, init_scale=cfg.train.fp16_init_scale,
                                  enabled=cfg.train.precision == "fp16")
    if make_epoch is None:
        make_epoch = shard_epochs(cfg, dist)
    stream = BatchStream(lambda e: make_epoch(e, cfg.train.seed, dist.rank, dist.world_size))
    ts = TrainState()
    # The one list of what a checkpoint holds: save writes each state_dict(), resume loads each.
    states = {"model": model, "ema": ema, "optimizer": opt, "scheduler": sched, "scaler": scaler,
              "train": ts, "data": DataState(stream, dist), "rng": RngState(dist)}
    meta = checkpoint_meta(cfg, model_cfg, diffusion_config(cfg).to_dict(), dist)

    # ---- resume ------------------------------------------------------------------------------------
    removed_tmp = ckpt.clean_temp_files(run) if dist.is_main else []
    found = ckpt.find_resume(run, resume)
    optim_changed: dict[str, list] = {}
    if found.state is not None:
        _check_compatible(cfg, found.state["config"], found.path)
        impl = implementation_flags(opt)
        fmt.load_states(found.state, states, str(found.path))
        optim_changed = apply_optim_config(cfg, opt, sched, impl)
        found.state = None  # free the host copy before training

    # FLOPs per sample for MFU, counted once on the bare model (before DDP registers its gradient hooks)
    objective: Objective = make_objective(cfg, model_cfg, device)
    peak = peak_flops(device, cfg.train.precision) * dist.world_size
    flops_per_sample = objective.count_flops(model, amp_dtype) if peak > 0 else None

    # ---- distribution and compilation --------------------------------------------------------------
    train_model = model
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.train.compile:
        train_model = torch.compile(train_model)

    log = NullLogger()
    if dist.is_main:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run / "config.toml", dump_toml(cfg))
        log = RunLogger(run, total_steps=cfg.train.max_steps, start_step=ts.step,
                        tensorboard=cfg.log.tensorboard, console=console)
        log.event(ts.step, "start", world_size=dist.world_size, device=str(device),
                  resumed_from=str(found.path) if found.path else None,
                  parameters=sum(p.numel() for p in model.parameters()))
        notes = [f"skipping unreadable checkpoint: {line}" for line in found.skipped]
        if found.skipped:
            notes.append(f"resumed from the older checkpoint {found.path}")
        if optim_changed:
            notes.append("optim settings differ from the checkpoint's; using the config's: " + ", ".join(
                f"{k} {old} -> {new}" for k, (old, new) in sorted(optim_changed.items())))
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
            log.event(ts.step, "warning", message=note)
        if removed_tmp:
            log.event(ts.step, "cleanup", removed=[str(p) for p in removed_tmp])

    def save(reason: str) -> Path:
        path = save_states(ckpt.checkpoint_path(run, ts.step), states, meta, dist)
        if dist.is_main:
            export_sampling_checkpoint(cfg, model, model_cfg, ema, run / "model.pt", step=ts.step)
            removed = ckpt.prune(run, cfg.checkpoint.keep_last, cfg.checkpoint.milestone_every)
            log.event(ts.step, "checkpoint", path=str(path), reason=reason, pruned=len(removed))
        D.barrier(dist)
        return path

    # ---- the loop ----------------------------------------------------------------------------------
    timer = StepTimer()
    window = _Window()
    nonfinite_in_row = overflow_in_row = 0
    inject_nan = set(cfg.debug.inject_nan_steps)  # test hook, read once
    injected: set[int] = set()
    result = TrainResult(step=ts.step)
    last_saved = None
    samples_per_step = objective.samples_per_batch(cfg) * cfg.optim.grad_accum * dist.world_size
    try:
        while ts.step < cfg.train.max_steps:
            step = ts.step
            if D.any_rank(stop.requested, dist):
                last_saved = save("preempted")
                result.preempted, result.signal = True, stop.signum
                log.event(step, "preempted", signal=stop.signum, checkpoint=str(last_saved))
                break

            torch.manual_seed(derive_seed(cfg.train.seed, dist.rank, step))
            train_model.train()
            timer.start()
            terms_sum: dict[str, torch.Tensor] = {}
            for micro in range(cfg.optim.grad_accum):
                with timer.waiting(), warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    for noise in (ResourceWarning, DeprecationWarning):  # library noise, not data problems
                        warnings.simplefilter("ignore", noise)
                    batch = next(stream)
                _report_warnings(caught, step, dist, log)
                batch = objective.to_device(batch)
                last = micro == cfg.optim.grad_accum - 1
                sync = contextlib.nullcontext() if (last or not dist.enabled) else train_model.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        loss, terms = objective.loss(train_model, batch)
                    if inject_nan and step in inject_nan and step not in injected:
                        injected.add(step)
                        loss = loss * float("nan")
                        terms = {**terms, "loss": loss}
                    scaler.scale(loss / cfg.optim.grad_accum).backward()
                for k, v in terms.items():
                    terms_sum[k] = terms_sum.get(k, 0) + v.detach() / cfg.optim.grad_accum

            scaler.unscale_(opt)
            max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            # DDP averaged the gradients, so this norm (and its finiteness) is the same on every rank.
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            loss_ok = not D.any_rank(not bool(torch.isfinite(terms_sum["loss"])), dist)
            grads_ok = bool(torch.isfinite(grad_norm))
            finite = loss_ok and grads_ok
            if finite:
                scaler.step(opt)
                nonfinite_in_row = overflow_in_row = 0
            elif loss_ok and scaler.is_enabled():
                # A finite loss with inf/NaN gradients under fp16 is the GradScaler's scale overflowing: it
                # skips the update and halves the scale. Normal near the start of a run; not a NaN loss.
                overflow_in_row += 1
                ts.overflow_total += 1
                log.event(step, "overflow", loss_scale=float(scaler.get_scale()), skipped_total=ts.overflow_total)
                if overflow_in_row >= MAX_OVERFLOWS_IN_A_ROW:
                    raise NonFiniteLossError(
                        f"{overflow_in_row} fp16 steps in a row overflowed although the loss was finite (last at "
                        f"step {step}): the loss scale collapsed; try train.precision=bf16 or lower optim.lr; "
                        f"resume from {ckpt.checkpoint_dir(run)}")
            else:
                nonfinite_in_row += 1
                ts.nonfinite_total += 1
                log.event(step, "warning", message="non-finite loss or gradient: step skipped",
                          skipped_total=ts.nonfinite_total, in_a_row=nonfinite_in_row)
                if nonfinite_in_row >= cfg.train.max_nonfinite:
                    raise NonFiniteLossError(
                        f"{nonfinite_in_row} optimizer steps in a row had a NaN/inf loss or gradient "
                        f"(last at step {step}); lower optim.lr, try train.precision=bf16/fp32 or "
                        f"raise train.max_nonfinite; resume from {ckpt.checkpoint_dir(run)}"
                    )
            scaler.update()
            opt.zero_grad(set_to_none=True)
            if finite:
                sched.step()
                ts.step += 1
                ema.update(model, ts.step)
            step = ts.step
            timer.stop()
            window.add(terms_sum if finite else None, grad_norm if finite else None, timer)

            if dist.is_main:
                lr = opt.param_groups[0]["lr"]
                log.progress(step, f"loss {float(terms_sum['loss']):.4f} lr {lr:.2e}")
            if finite and step % cfg.log.every == 0:
                metrics = window.summary(dist, samples_per_step)
                metrics.update(lr=opt.param_groups[0]["lr"], nonfinite_skipped=ts.nonfinite_total,
                               overflow_skipped=ts.overflow_total, data_epoch=stream.epoch)
                if scaler.is_enabled():
                    metrics["loss_scale"] = float(scaler.get_scale())
                if device.type == "cuda":
                    metrics["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                if flops_per_sample and peak > 0 and metrics.get("samples_per_s"):
                    metrics["mfu"] = metrics["samples_per_s"] * flops_per_sample / peak
                    metrics["tflop_per_sample"] = flops_per_sample / 1e12
                log.log(step, metrics)
                window = _Window()
            if finite and step % cfg.checkpoint.every == 0:
                last_saved = save("interval")
            if finite and cfg.log.preview_every > 0 and step % cfg.log.preview_every == 0 and dist.is_main:
                _preview(cfg, run, model, model_cfg, ema, objective, batch, step, log)
        else:
            if last_saved is None or ckpt.checkpoint_path(run, ts.step) != last_saved:
                last_saved = save("final")
            if dist.is_main:
                files = export_original_layout(cfg, model, ema, run / "original", step=ts.step)
                log.event(ts.step, "export", files=[str(p) for p in files])
    finally:
        log.close()

    result.step = ts.step
    result.checkpoint = str(last_saved) if last_saved else None
    result.nonfinite_skipped = ts.nonfinite_total
    result.overflow_skipped = ts.overflow_total
    result.batches_per_rank = D.all_gather_ints(stream.batches_seen, dist)
    if dist.is_main:
        atomic_write_json(run / "result.json", result.__dict__)
    return result


def _report_warnings(caught, step: int, dist: D.DistInfo, log) -> None:
    """Loader warnings (a corrupt shard or clip skipped) go to the run log instead of vanishing."""
    for w in caught:
        if dist.is_main:
            log.event(step, "warning", message=str(w.message), category=w.category.__name__)
        else:
            print(f"rank {dist.rank} warning at step {step}: {w.message}", file=sys.stderr)


class _Window:
    """Accumulates metrics between two log lines; one host sync per log line, not per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.grad_norms: list[torch.Tensor] = []
        self.steps = 0  # all steps, for timing
        self.finite_steps = 0  # steps whose losses are averaged (skipped steps would log NaN)
        self.busy = self.wait = 0.0

    def add(self, terms: dict[str, torch.Tensor] | None, grad_norm, timer: "StepTimer") -> None:
        if terms is not None:
            self.finite_steps += 1
            for k, v in terms.items():
                self.sums[k] = self.sums.get(k, 0) + v
        if grad_norm is not None:
            self.grad_norms.append(grad_norm.detach())
        self.steps += 1
        self.busy += timer.last_total
        self.wait += timer.last_wait

    def summary(self, dist: D.DistInfo, samples_per_step: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in sorted(self.sums.items()):
            mean = D.all_reduce_mean(v / self.finite_steps, dist)
            out[k] = float(mean)
        if self.grad_norms:
            out["grad_norm"] = float(torch.stack(self.grad_norms).float().mean())
        if self.busy > 0:
            out["samples_per_s"] = samples_per_step * self.steps / self.busy
            out["data_wait_frac"] = self.wait / self.busy
        return out


# The data shapes the network was trained on: the weights load at any shape, so check them explicitly.
_SHAPE_KEYS = ("frames", "size", "low_res", "sr_frames_per_clip", "latents")


def _check_compatible(cfg: TrainConfig, saved: dict[str, Any], path) -> None:
    now = cfg.to_dict()
    fix = f"use the run's own config ({path.parent.parent}/config.toml) or a new --out directory"
    saved = {**saved, "kind": fmt.canonical_kind(saved.get("kind", "mmunet"), str(path))}
    # a setting added after the checkpoint was written (diffusion.rescale_vb) had its default then
    saved["diffusion"] = {**TrainConfig().to_dict()["diffusion"], **(saved.get("diffusion") or {})}
    for section in ("kind", "model", "diffusion"):
        if now[section] != saved.get(section):
            raise ConfigError(f"--resume {path}: the checkpoint was trained with {section} = "
                             f"{saved.get(section)!r} but the config now says {now[section]!r}; {fix}")
    saved_data = saved.get("data") or {}
    for key in _SHAPE_KEYS:
        if key in saved_data and now["data"][key] != saved_data[key]:
            raise ConfigError(f"--resume {path}: the checkpoint was trained with data.{key} = {saved_data[key]!r} "
                             f"but the config now says {now['data'][key]!r}; {fix}")


def _preview(cfg, run, model, model_cfg, ema, objective, batch, step, log) -> None:
    # the preview draws its own noise; fork so the training RNG stream is untouched
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        paths = write_preview(cfg, run, model, model_cfg, ema, objective, batch, step, log)
    log.event(step, "preview", files=[str(p) for p in paths])

