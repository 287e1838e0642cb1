"""Training configuration: one dataclass per TOML table, loaded from `avbench/configs/<name>.toml`.

A run is fully described by its resolved `TrainConfig`: the named TOML file, then `--set a.b=value`
overrides (values parsed as TOML literals, so `--set optim.betas=[0.9,0.99]` works), then the few
shortcut options of the CLI. The resolved config is written to `RUN/config.toml` and into every
checkpoint, so a run can be reproduced from its directory alone.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from avbench.checkpoint import KINDS, canonical_kind
from avbench.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class ModelSection:
    """The network: a named preset of `MMUNetConfig` / `SuperResConfig`, plus field overrides."""

    preset: str = "seed"
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {num_channels = 64}


@dataclass
class DataSection:
    shards: str = ""  # a shard root (`DIR/shards` or `DIR`), set by `--data`
    split: str = "train"
    size: int = 64  # frame size of the shards read (the high resolution for super-resolution)
    frames: int = 16
    batch_size: int = field(default=4, metadata={"help": "Per-process micro-batch."})  # per GPU, per micro-batch
    workers: int = field(default=4, metadata={"help": "DataLoader workers per process."})
    flip: float = 0.0  # horizontal-flip probability (the seed flipped always; off by default)
    epoch_batches: int = 1000  # batches per loader epoch; epochs are reseeded from (seed, rank, epoch)
    # super-resolution only: frames per clip fed as independent images, and the low resolution
    sr_frames_per_clip: int = 4
    low_res: int = 64
    # latent only: which latent shards to read, ROOT/latents/<vae>/<size> (`avbench encode` writes them);
    # `size` is the pixel size that was encoded, e.g. {vae = "sd-mmaudio16k", size = 256}
    latents: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiffusionSection:
    steps: int = 1000
    schedule: Literal["linear", "cosine"] = "linear"
    # learned-variance (SR) loss: scale the VB term by steps/1000 (improved DDPM); the seed's SR did not
    rescale_vb: bool = True


@dataclass
class OptimSection:
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping (the norm is still logged)
    grad_accum: int = 1  # micro-batches per optimizer step
    fused: bool = True  # fused AdamW where the device supports it (CUDA); foreach otherwise


@dataclass
class EmaSection:
    decay: float = 0.9999
    start_step: int = 0  # EMA copies the weights until this step, then averages


@dataclass
class TrainSection:
    max_steps: int = field(default=100_000, metadata={"help": "Optimizer steps to train for."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, data order and noise."})
    precision: Literal["bf16", "fp16", "fp32"] = field(default="bf16", metadata={
        "help": "Autocast dtype; fp16 uses a GradScaler."})
    tf32: bool = True
    compile: bool = False
    activation_checkpointing: bool = False
    max_nonfinite: int = 20  # abort after this many non-finite losses in a row
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda."})
    # fp16 only: the GradScaler's first loss scale (torch's default 2**16); it halves on every overflow
    fp16_init_scale: float = 65536.0


@dataclass
class CheckpointSection:
    every: int = 5000
    keep_last: int = 3
    milestone_every: int = 50_000  # checkpoints at multiples of this are never pruned; 0 = none


@dataclass
class LogSection:
    every: int = 50
    tensorboard: bool = True
    preview_every: int = 10_000  # 0 = never
    preview_samples: int = 2
    preview_sampler: str = "ddim"
    preview_sampler_steps: int = 25


@dataclass
class DebugSection:
    """Test hooks, kept out of the hot loop's way (read once at start-up)."""

    # make the loss NaN at these optimizer steps (exercises the non-finite skip path end to end)
    inject_nan_steps: list[int] = field(default_factory=list)


@dataclass
class TrainConfig:
    # a model kind of avbench.checkpoint.KINDS; the old spelling "baseline" is read as "mmunet"
    kind: Literal["mmunet", "superres", "latent"] = "mmunet"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    diffusion: DiffusionSection = field(default_factory=DiffusionSection)
    optim: OptimSection = field(default_factory=OptimSection)
    ema: EmaSection = field(default_factory=EmaSection)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    debug: DebugSection = field(default_factory=DebugSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "<config>") -> "TrainConfig":
        cfg = _build(cls, _upgrade(d), where, "")
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "<config>") -> None:
        choices = {"kind": (self.kind, tuple(KINDS)),
                   "train.precision": (self.train.precision, ("bf16", "fp16", "fp32")),
                   "train.device": (self.train.device, ("auto", "cpu", "cuda")),
                   "diffusion.schedule": (self.diffusion.schedule, ("linear", "cosine"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{where}: {key} = {value!r} is not one of {', '.join(allowed)}")
        positive = {"data.batch_size": self.data.batch_size, "data.frames": self.data.frames,
                    "data.epoch_batches": self.data.epoch_batches, "optim.grad_accum": self.optim.grad_accum,
                    "checkpoint.every": self.checkpoint.every, "log.every": self.log.every,
                    "diffusion.steps": self.diffusion.steps}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{where}: {key} = {value} must be at least 1")
        latents = self.data.latents
        if self.kind == "latent":
            if sorted(latents) != ["size", "vae"] or not isinstance(latents["vae"], str) or \
                    not isinstance(latents["size"], int) or isinstance(latents["size"], bool):
                raise ConfigError(f"{where}: a latent config needs data.latents = {{vae = \"<codec>\", size = <pixels>}}, "
                                  f"got {latents!r}")
            if self.data.flip:  # the latent of a flipped frame is not the flipped latent
                raise ConfigError(f"{where}: data.flip = {self.data.flip} does not apply to latents; set it to 0")
        elif latents:
            raise ConfigError(f"{where}: data.latents only applies to kind = \"latent\" (this is {self.kind!r})")


def _upgrade(d: Any) -> Any:
    """Configs written by older avbench: kind "baseline" and `train.inject_nan_steps` (now `[debug]`)."""
    if not isinstance(d, dict):
        return d
    d = dict(d)
    if isinstance(d.get("kind"), str) and d["kind"] in ("baseline", "sr"):
        d["kind"] = canonical_kind(d["kind"])
    train = d.get("train")
    if isinstance(train, dict) and "inject_nan_steps" in train:
        train = dict(train)
        debug = dict(d.get("debug") or {})
        debug.setdefault("inject_nan_steps", train.pop("inject_nan_steps"))
        d["train"], d["debug"] = train, debug
    return d


def _build(cls: type, d: dict[str, Any], where: str, prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: [{prefix.rstrip('.') or 'top level'}] must be a table, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: [{prefix.rstrip('.') or 'top level'}] unknown key {unknown[0]!r} "
            f"(allowed: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in d.items():
        default = getattr(cls(), name) if name in fields else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, where, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, default, where, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str, key: str) -> Any:
    """Check a value against the type of its default; ints are accepted where floats are expected."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{where}: {key} = {value!r} has the wrong type (expected {type(default).__name__})")
    return value


def resolve_config_path(name_or_path: str | Path) -> Path:
    """`tiny` → `avbench/configs/tiny.toml` (a `configs/` folder in the cwd first); a path is kept."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist; pass a path to a .toml or one of: {available()}")
        return p
    for base in (Path.cwd() / "configs", CONFIG_DIR):
        cand = base / f"{name_or_path}.toml"
        if cand.exists():
            return cand
    raise ConfigError(f"no training config named {name_or_path!r}; available: {available()} (or pass a .toml path)")


def available() -> str:
    return ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`optim.lr=2e-4` → (["optim", "lr"], 2e-4). Values are TOML literals; bare words are strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. optim.lr=2e-4")
    key, raw = text.split("=", 1)
    path = [k.strip() for k in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r}: empty key part")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # `--set model.preset=tiny` without quotes
    return path, value


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides to a plain config dict (validated later by from_dict)."""
    for text in overrides:
        path, value = parse_override(text)
        node = d
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a table")
        node[path[-1]] = value
    return d


def load_config(name_or_path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    path = resolve_config_path(name_or_path)
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    where = str(path)
    base = TrainConfig.from_dict(d, where=where).to_dict()  # validate the file on its own first
    return TrainConfig.from_dict(apply_overrides(base, list(overrides)), where=f"{where} + --set")


def dump_toml(cfg: TrainConfig) -> str:
    import tomli_w

    return tomli_w.dumps(cfg.to_dict())
