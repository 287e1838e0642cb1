"""Every option is written once: the commands' options are generated from the config dataclasses."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avbench.cli import COMMANDS, app
from avbench.commands.options import Config, Group, to_click


def _commands():
    """(label, click command, command function) for every command, group members included."""
    for name, entry in COMMANDS.items():
        click_cmd = to_click(name, entry)
        if isinstance(entry, Group):
            for sub, func in entry.commands.items():
                yield f"{name} {sub}", click_cmd.commands[sub], func
        else:
            yield name, click_cmd, entry


ALL = list(_commands())
WITH_CONFIG = [(label, cmd, p.default) for label, cmd, func in ALL
               for p in inspect.signature(func).parameters.values() if isinstance(p.default, Config)]


def _cli_default(f: dataclasses.Field, multiple: bool):
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if multiple:  # a repeatable option starts empty; the config gets () or None back
        return list(default or ())
    return str(default) if callable(getattr(type(default), "parse", None)) else default


@pytest.mark.parametrize("label,cmd,func", ALL, ids=[a[0] for a in ALL])
def test_every_option_has_help_and_flags_are_flags(label, cmd, func):
    for param in cmd.params:
        assert param.help, f"avbench {label}: {param.name} has no help (field metadata 'help')"
        if param.type_descriptor.annotation is bool:
            assert param.is_flag and param.secondary_opts, f"avbench {label}: {param.opts} should be --x/--no-x"


@pytest.mark.parametrize("label,cmd,spec", WITH_CONFIG, ids=[a[0] for a in WITH_CONFIG])
def test_defaults_and_required_come_from_the_dataclass(label, cmd, spec):
    module, _, name = spec.target.partition(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    params = {p.name: p for p in cmd.params}
    for f in dataclasses.fields(cls):
        if f.name in spec.skip or not f.init:
            continue
        p = params[f.name]
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        assert p.required == (not has_default or f.name in spec.required), (label, f.name)
        if has_default and f.name not in spec.required:
            assert p.default == _cli_default(f, p.multiple), (label, f.name, p.default)


def test_train_shortcuts_show_the_train_config_default_and_every_kind_shares_one_signature():
    from avbench.train.config import TrainConfig

    train = to_click("train", COMMANDS["train"])
    baseline = train.commands["baseline"]
    for other in ("superres", "latent"):
        assert [p.name for p in baseline.params] == [p.name for p in train.commands[other].params]
    precision = {p.name: p for p in baseline.params}["precision"]
    assert f"TrainConfig: {TrainConfig().train.precision}" in precision.show_default
    # a Literal field: only its values are accepted
    res = CliRunner().invoke(app, ["train", "baseline", "--out", "x", "--precision", "fp8"])
    assert res.exit_code == 2 and "fp8" in res.output
    defaults = {c: {p.name: p.default for p in cmd.params}["config"] for c, cmd in train.commands.items()}
    assert defaults == {"baseline": "mmdiffusion-64", "superres": "sr-64-256", "latent": "latent-sd-mmaudio16k-256"}


def test_option_values_reach_the_config(monkeypatch, tmp_path):
    import avbench.metrics.evaluate as evaluate

    seen = {}

    def run_eval(cfg, progress=None):
        seen["eval"] = cfg
        return {"scores": {}, "warnings": []}, tmp_path / "r.json"

    monkeypatch.setattr(evaluate, "run_eval", run_eval)
    res = CliRunner().invoke(app, ["eval", "--samples", "s", "--fvd", "--no-cache", "--num-clips", "7"])
    assert res.exit_code == 0, res.output
    cfg = seen["eval"]
    assert (cfg.fvd, cfg.fad, cfg.use_cache, cfg.num_clips, cfg.samples) == (True, False, False, 7, "s")

    import avbench.curate.download as download

    def download_sources(cfg, **kw):
        seen["download"] = cfg
        return download.DownloadSummary(root=cfg.root)

    monkeypatch.setattr(download, "download_sources", download_sources)
    res = CliRunner().invoke(app, ["download", "pinned.csv", "--root", str(tmp_path), "-j", "3", "--sleep", "1.5",
                                   "--min-duration", "2", "--spec", "demo", "--retry-failed"])
    assert res.exit_code == 0, res.output
    cfg = seen["download"]
    assert (cfg.lock, cfg.spec, cfg.jobs, cfg.sleep_s, cfg.min_duration_s, cfg.retry_failed) == \
        (Path("pinned.csv"), "demo", 3, 1.5, 2.0, True)


def test_a_bad_value_is_a_usage_error_naming_the_option(tmp_path):
    res = CliRunner().invoke(app, ["scene-cut", "demo", "--root", str(tmp_path), "--partition", "5/2"])
    assert res.exit_code == 2
    assert "--partition" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["sample", "--out", str(tmp_path)])  # --checkpoint is required
    assert res.exit_code == 2 and "--checkpoint" in res.output
