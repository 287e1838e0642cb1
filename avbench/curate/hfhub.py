"""Everything avbench says to huggingface_hub: listing a dataset repository at a commit, fetching one of
its files through the hub's cache, and the classification of its errors.

Going through huggingface_hub (not raw HTTP) gives users its cache (a file fetched once is not fetched
again, by any tool), `HF_TOKEN` for gated repositories, resumable transfers, `HF_ENDPOINT` mirrors and
`HF_HUB_OFFLINE`. huggingface_hub reads those variables when it is imported; avbench reads them at each
call and passes them on (endpoint, cache_dir, token, local_files_only), so a test or a long-lived
process that changes them is obeyed. It takes ~0.4 s to import, so it is imported inside the functions.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from pathlib import Path

from avbench.curate.throttle import RETRY_STATUSES, parse_retry_after
from avbench.errors import PERMANENT, TRANSIENT, SourceFailure

_TRUE = ("1", "on", "yes", "true")


def endpoint() -> str:
    """The hub's base URL; `HF_ENDPOINT` points at a mirror."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cache_dir() -> str | None:
    """The cache huggingface_hub would pick from the environment now (None: its own default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None  # None: huggingface_hub's own stored login, if any


def _api():
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # tqdm bars on stderr would interleave with avbench's progress
    return HfApi(endpoint=endpoint(), token=_token())


def dataset_at(repo: str, revision: str) -> tuple[str, list[str], dict]:
    """(commit sha of `revision`, every file path at that commit, the dataset card's metadata)."""
    api = _api()
    info = api.dataset_info(repo, revision=revision)
    sha = info.sha or revision
    # The listing is asked for at the sha, not the branch: a push between the two calls cannot mix commits.
    files = api.list_repo_files(repo, repo_type="dataset", revision=sha)
    card = info.card_data.to_dict() if info.card_data is not None else {}
    return sha, sorted(files), card


def resolve_url(repo: str, revision: str, path: str) -> str:
    return f"{endpoint()}/datasets/{repo}/resolve/{revision}/{urllib.parse.quote(path)}"


def parse_resolve_url(url: str) -> tuple[str, str, str]:
    """(endpoint, repo, revision) of a lock row's `.../datasets/{repo}/resolve/{revision}/{path}` URL."""
    head, sep, tail = url.partition("/resolve/")
    base, sep2, repo = head.rpartition("/datasets/")
    revision = tail.split("/", 1)[0]
    if not (sep and sep2 and repo.count("/") == 1 and revision):
        raise SourceFailure(PERMANENT, f"{url!r}: not a Hugging Face dataset resolve URL "
                                       f"(.../datasets/OWNER/NAME/resolve/SHA/PATH); pin it again with `avbench resolve`")
    return base, repo, revision


def fetch(url: str, path_in_repo: str, outdir: Path, stem: str) -> tuple[Path, dict[str, str]]:
    """Fetch one file of a pinned hf row through the hub's cache into `outdir`; (the file, provenance).

    The copy in `outdir` is a hard link to the cached blob where the file system allows (no second copy
    on disk), else a copy. HF_ENDPOINT, when set, wins over the endpoint in the lock row (a mirror)."""
    import huggingface_hub
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars

    base, repo, revision = parse_resolve_url(url)
    disable_progress_bars()
    cached = hf_hub_download(repo, path_in_repo, repo_type="dataset", revision=revision,
                             endpoint=os.environ.get("HF_ENDPOINT", base).rstrip("/"), cache_dir=cache_dir(),
                             token=_token(), local_files_only=offline())
    blob = Path(os.path.realpath(cached))
    out = outdir / f"{stem}{Path(path_in_repo).suffix.lower() or '.bin'}"
    out.unlink(missing_ok=True)
    try:
        os.link(blob, out)
    except OSError:
        shutil.copyfile(blob, out)
    return out, {"fetcher": f"huggingface_hub {huggingface_hub.__version__}", "extractor": "hf",
                 "channel": repo, "format_id": revision}


def _status(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def retry_hint(exc: BaseException) -> tuple[bool, float | None]:
    """(may a wait cure it, the server's Retry-After in seconds) for a huggingface_hub error."""
    status = _status(exc)
    if status in RETRY_STATUSES:
        return True, parse_retry_after(exc.response.headers.get("Retry-After"))
    return False, None


def classify(exc: BaseException) -> tuple[str, str] | None:
    """(error class, one-line message) for a huggingface_hub error; None for anything else."""
    from huggingface_hub import errors as hf

    msg = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled)) and offline():
        # A rerun with network access can fetch it: transient, and the message says how.
        return TRANSIENT, "not in the Hugging Face cache and HF_HUB_OFFLINE is set; run once online (or unset HF_HUB_OFFLINE)"
    if isinstance(exc, hf.GatedRepoError):
        return PERMANENT, "gated repository: accept its terms on the hub and set HF_TOKEN to a token of that account"
    if isinstance(exc, (hf.RepositoryNotFoundError, hf.RevisionNotFoundError, hf.EntryNotFoundError)):
        return PERMANENT, f"{msg.split(' For more')[0]} (repository, commit or file gone; pin it again with `avbench resolve`)"
    if isinstance(exc, hf.HfHubHTTPError):
        status = _status(exc)
        if status in (400, 401, 403, 404, 410, 451):
            return PERMANENT, f"HTTP {status}: {msg[:200]}"
        return TRANSIENT, f"HTTP {status}: {msg[:200]}"
    if isinstance(exc, (hf.LocalEntryNotFoundError, OSError)):
        # Network trouble surfaces as LocalEntryNotFoundError ("cannot reach ... and no cached copy").
        return TRANSIENT, msg[:300]
    return None
