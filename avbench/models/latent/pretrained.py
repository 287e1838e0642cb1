"""`from_pretrained` for codec parts: a hub id (the user's HF cache first) or a local folder, one-line errors,
and the provenance recorded in the latent index (hub revision, sha256 of the weight files, config hash)."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from avbench.errors import WeightsError
from avbench.io import sha256_file
from avbench.models.latent.codec import config_hash

_TRUE = {"1", "true", "yes", "on"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def looks_like_path(source: str) -> bool:
    """A hub id is `owner/name`; anything starting like a path or with more slashes is a folder."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1


def folder_sha256(folder: Path) -> str:
    """One digest over the weight files of a model folder (name + sha256 of each, sorted)."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    for p in files:
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest() if files else ""


@contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence diffusers' and transformers' own progress bars and info/warning logs for the block, then put
    back exactly what was set before: avbench's progress bar is the only one in the user's output, and a
    caller that turned those libraries' bars on keeps them afterwards. Only libraries already imported are
    touched (importing transformers just to silence it would cost seconds)."""
    saved = []
    for lib in ("diffusers", "transformers"):
        if lib in sys.modules:
            log = importlib.import_module(f"{lib}.utils.logging")
            saved.append((log, log.get_verbosity(), log.is_progress_bar_enabled()))
    # transformers' switch also flips huggingface_hub's global one: restore that too, and only then
    hub = sys.modules.get("huggingface_hub.utils") if "transformers" in sys.modules else None
    hub_off = hub.are_progress_bars_disabled() if hub is not None else None
    for log, _, _ in saved:
        log.set_verbosity_error()
        log.disable_progress_bar()
    try:
        yield
    finally:
        for log, verbosity, bars in reversed(saved):
            log.set_verbosity(verbosity)
            (log.enable_progress_bar if bars else log.disable_progress_bar)()
        if hub is not None:
            (hub.disable_progress_bars if hub_off else hub.enable_progress_bars)()


def from_pretrained(load: Callable[..., Any], source: str, *, subfolder: str | None, what: str, licence: str,
                    flag: str) -> tuple[Any, dict[str, Any]]:
    """(model, provenance). `load` is e.g. `AutoencoderKL.from_pretrained`; `what` names the part in errors.

    A hub id is looked up in the local HF cache first (no network); only when it is not there, and
    HF_HUB_OFFLINE is unset, is the hub asked (it retries for ~30 s when unreachable)."""
    kw = {"subfolder": subfolder} if subfolder else {}
    local = Path(source).expanduser()
    if local.is_dir():
        sub = local / subfolder if subfolder and (local / subfolder).is_dir() else local
        try:
            with quiet_hf():
                model = load(str(sub), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise WeightsError(f"{what}: {sub} is not a loadable model folder ({_short(e)}); pass the folder that "
                               f"holds its config.json and weights with {flag}") from None
        return model, {"id": source if not local.is_absolute() else local.name, "source": "local folder",
                       "sha256": folder_sha256(sub), "config_hash": config_hash(model.config), "licence": licence}
    if looks_like_path(source):
        raise WeightsError(f"{what}: {local} does not exist (licence {licence}); pass an existing local folder "
                           f"with {flag}")
    model, err = None, None
    try:
        with quiet_hf():
            model = load(source, local_files_only=True, **kw)
    except (OSError, ValueError) as e:
        err = e
    if model is None and not hub_offline():
        try:  # a real download keeps the hub's progress bar: it can take minutes
            model = load(source, **kw)
        except (OSError, ValueError) as e:
            err = e
    if model is None:
        where = "HF_HUB_OFFLINE is set" if hub_offline() else f"fetching it failed ({_short(err)})"
        raise WeightsError(
            f"{what} {source}{'/' + subfolder if subfolder else ''} (licence {licence}) is not in the Hugging Face "
            f"cache and {where}; download it where the hub is reachable "
            f"(`huggingface-cli download {source}`) or pass a local folder with {flag}") from None
    revision, digest = _hub_files(source, subfolder)
    return model, {"id": source, "source": "hugging face hub", "revision": revision, "sha256": digest,
                   "config_hash": config_hash(model.config), "licence": licence}


def _hub_files(repo_id: str, subfolder: str | None) -> tuple[str | None, str]:
    """(commit of the cached snapshot, sha256 over its weight files) — from the cache, no network."""
    try:
        from huggingface_hub import snapshot_download

        snap = Path(snapshot_download(repo_id, local_files_only=True,
                                      allow_patterns=[f"{subfolder}/*"] if subfolder else None))
    except Exception:  # noqa: BLE001 - provenance is best effort; the model itself loaded
        return None, ""
    folder = snap / subfolder if subfolder else snap
    return snap.name, folder_sha256(folder) if folder.is_dir() else ""


def _short(e: BaseException | None) -> str:
    text = " ".join(str(e).split()) if e else "not found"
    return text if len(text) <= 160 else text[:157] + "..."
