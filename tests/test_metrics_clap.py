"""CLAP scorer: a missing model or tokenizer is a clear error, never an empty-vocabulary run."""

import pytest

from avbench.metrics import clap


def test_missing_model_names_flag_and_env(monkeypatch):
    monkeypatch.delenv(clap.ENV, raising=False)
    with pytest.raises(clap.ClapError, match="--clap-model") as err:
        clap.resolve_model_dir(None)
    assert clap.ENV in str(err.value)


def test_folder_without_tokenizer_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(clap.ClapError, match="empty vocabulary"):
        clap.resolve_model_dir(tmp_path)
    with pytest.raises(clap.ClapError, match="config.json"):
        clap.resolve_model_dir(tmp_path / "nothing")
