"""Memorisation check: is a generated sample closer to some training clip than held-out clips ever are?

For every generated sample we find its nearest training clip in a feature space (I3D logits for video,
the clip's mean VGGish embedding for audio) and its distance. The baseline is the same statistic for
held-out test clips against the same training set: clips the model never saw, from the same distribution.
A sample is flagged when its nearest-neighbour distance is below the `percentile`-th (default 1st)
percentile of the held-out distances, i.e. closer to a training clip than 99 % of genuinely new clips
are; the score is the flagged fraction, per feature space. A copy (or a re-encode) of a training clip
lands at ~0 and is flagged; a fresh sample is flagged with probability ≈ 1 % by construction.

Distance: Euclidean distance between features standardised per dimension with the TRAINING set's mean
and standard deviation, divided by √d (an RMS per dimension, so the I3D and VGGish numbers read alike).
- Standardising, because raw I3D logits have very different spreads per class: unstandardised L2 would be
  decided by the few classes that vary most in a domain, and a copy that differs only in the quiet
  dimensions would look no different from a fresh clip.
- L2 rather than cosine, because the logits' norm carries information (how strongly a clip drives the
  network) that cosine discards: it would call a clip and a faded copy of it identical. The threshold
  comes from the held-out baseline either way, so no absolute scale has to be chosen.
- The training statistics (not the samples') define the scale, so the distances of the samples and of the
  held-out baseline are measured with one ruler.

The check looks at one window per clip (frame 0, as every source yields it), so a sample that copies a
later part of a training clip is only caught if its features are still close; the record says so.
A contact sheet PNG (contact_sheet.py) shows the closest samples beside their neighbours; to draw it,
three 64×64 thumbnails of every training clip are kept in memory (~37 KB a clip; `train_limit` caps it).

Sources: the training set is the `train` split of the reference's dataset root unless given; the held-out
set is the reference split when it is not `train`, else the root's `test` split (`default_sources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avbench.errors import MetricsError
from avbench.metrics.contact_sheet import SheetRow, thumbnails, write_contact_sheet
from avbench.metrics.extract import I3DFeatures, VGGishFeatures, extract_features
from avbench.metrics.sources import Source, iter_clips, parse_source

SPACES = ("i3d", "vggish")
DISTANCE = "l2_train_standardised_rms"
DEFAULT_PERCENTILE = 1.0
DEFAULT_TOP = 16
THUMB_FRAMES = 3


class MemorisationError(MetricsError):
    """The memorisation check cannot run: an empty or unreadable train/held-out set, or no feature space."""


def _dataset_root(spec: str) -> tuple[Path, str | None, str | None] | None:
    """(root, split, size) when `spec` is `DIR`, `DIR:split` or `DIR:split:size` of a built dataset."""
    if (Path(spec) / "shards" / "index.json").is_file():
        return Path(spec), None, None
    if ":" in spec and not Path(spec).exists():
        base, _, rest = spec.partition(":")
        split, _, size = rest.partition(":")
        if (Path(base) / "shards" / "index.json").is_file():
            return Path(base), split or None, size or None
    return None


def default_sources(reference: str | None, train: str | None = None, heldout: str | None = None) -> tuple[str, str]:
    """The (train, held-out) source strings the check compares against (see the module docstring)."""
    ref = _dataset_root(reference) if reference else None

    def split_of(name: str) -> str:
        root, _, size = ref
        return f"{root}:{name}" + (f":{size}" if size else "")

    if train is None:
        if ref is None:
            raise MemorisationError(f"--memorisation: cannot derive the training set from --reference {reference!r} "
                                    "(not a built dataset); pass --memorisation-train DIR:train")
        train = split_of("train")
    if heldout is None:
        if ref is None:
            raise MemorisationError(f"--memorisation: cannot derive held-out clips from --reference {reference!r}; "
                                    "pass --memorisation-heldout DIR:test")
        heldout = reference if ref[1] not in (None, "train") else split_of("test")
    if heldout == train:
        raise MemorisationError(f"--memorisation: the held-out set {heldout!r} is the training set; pass "
                                "--memorisation-heldout DIR:test")
    return train, heldout


# ---------------------------------------------------------------- the statistic (any feature arrays) ----

def standardiser(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and scale of the training features; dimensions that do not vary get scale 1."""
    train = np.asarray(train, dtype=np.float64)
    mu, sd = train.mean(axis=0), train.std(axis=0)
    tol = 1e-9 * max(float(sd.max(initial=0.0)), 1e-300)
    return mu, np.where(sd > tol, sd, 1.0)


def nearest(queries: np.ndarray, train: np.ndarray, mu: np.ndarray, sd: np.ndarray,
            chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest training row for each query and its distance (see the module docstring)."""
    q = (np.asarray(queries, np.float64) - mu) / sd
    t = (np.asarray(train, np.float64) - mu) / sd
    t2 = (t * t).sum(axis=1)
    idx = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qc = q[s : s + chunk]
        d2 = (qc * qc).sum(axis=1)[:, None] + t2[None, :] - 2.0 * qc @ t.T
        idx[s : s + chunk] = d2.argmin(axis=1)
    # The expanded form loses precision exactly where it matters (a copy would read ~1e-7, not 0), so the
    # distance to the chosen neighbour is recomputed directly.
    dist = np.sqrt(((q - t[idx]) ** 2).sum(axis=1) / q.shape[1]) if len(q) else np.zeros(0)
    return idx, dist


@dataclass
class SpaceResult:
    space: str
    threshold: float
    sample_idx: np.ndarray  # nearest training row per sample
    sample_dist: np.ndarray
    flagged: np.ndarray  # bool per sample
    heldout_dist: np.ndarray
    percentile: float
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # samples with a feature in this space

    def summary(self) -> dict:
        h, s = self.heldout_dist, self.sample_dist[self.valid]
        return {
            "threshold": self.threshold,
            "percentile": self.percentile,
            "fraction_flagged": float(self.flagged[self.valid].mean()) if self.valid.any() else None,
            "n_flagged": int(self.flagged[self.valid].sum()),
            "n_samples": int(self.valid.sum()),
            "n_heldout": len(h),
            "heldout_nn_distance": {"min": float(h.min()), "median": float(np.median(h)), "max": float(h.max())},
            "sample_nn_distance": ({"min": float(s.min()), "median": float(np.median(s)), "max": float(s.max())}
                                   if len(s) else None),
        }


def memorisation_space(samples: np.ndarray, train: np.ndarray, heldout: np.ndarray, *, space: str = "features",
                       percentile: float = DEFAULT_PERCENTILE) -> SpaceResult:
    """Nearest-training-clip distances of samples and of held-out clips, the held-out percentile threshold and
    the flags. Rows that are NaN (no feature, e.g. audio too short) are ignored and never flagged."""
    samples, train, heldout = (np.asarray(a, np.float64) for a in (samples, train, heldout))
    train = train[~np.isnan(train).any(axis=1)]
    heldout = heldout[~np.isnan(heldout).any(axis=1)]
    if len(train) == 0:
        raise MemorisationError(f"memorisation ({space}): the training set has no usable clips")
    if len(heldout) == 0:
        raise MemorisationError(f"memorisation ({space}): the held-out set has no usable clips (pass "
                                "--memorisation-heldout DIR:test)")
    mu, sd = standardiser(train)
    valid = ~np.isnan(samples).any(axis=1)
    idx = np.full(len(samples), -1, np.int64)
    dist = np.full(len(samples), np.nan)
    idx[valid], dist[valid] = nearest(samples[valid], train, mu, sd)
    _, hdist = nearest(heldout, train, mu, sd)
    threshold = float(np.percentile(hdist, percentile))
    flagged = valid & (np.nan_to_num(dist, nan=np.inf) < threshold)
    return SpaceResult(space, threshold, idx, dist, flagged, hdist, percentile, valid)


# ------------------------------------------------------------------------------ clips → features ----

@dataclass
class ClipSet:
    keys: list[str]
    feats: dict[str, np.ndarray]  # per clip, one row per key (NaN where a clip has no feature)
    thumbs: np.ndarray | None  # uint8 [N, THUMB_FRAMES, tile, tile, 3]


def collect(src: Source, *, i3d: I3DFeatures | None, vgg: VGGishFeatures | None, frames: int, tile: int,
            limit: int | None, workers: int = 0, errors: list[str] | None = None, batch_size: int = 16,
            progress=None, label: str = "") -> ClipSet:
    """One pass over a source: per-clip I3D logits, per-clip mean VGGish embedding and frame thumbnails."""

    def keep(clip):
        n_ex = len(vgg.examples(clip.audio, clip.sample_rate)) if vgg is not None else 0
        return n_ex, (thumbnails(clip.frames, tile, THUMB_FRAMES) if clip.frames is not None else None)

    task = progress.add_task(label, total=None) if progress is not None else None
    got = extract_features(iter_clips(src, frames, want_video=True, want_audio=vgg is not None, limit=limit,
                                      errors=errors, workers=workers),
                           i3d=i3d, vgg=vgg, batch_size=batch_size, progress=progress, task=task, keep=keep)
    feats: dict[str, np.ndarray] = {}
    if i3d is not None:
        feats["i3d"] = got.i3d
    if vgg is not None:
        rows, pos = [], 0
        for n_ex, _ in got.clips:  # VGGish pools examples across clips; split them back per clip
            rows.append(got.vggish[pos : pos + n_ex].mean(axis=0) if n_ex else np.full(got.vggish.shape[1], np.nan))
            pos += n_ex
        feats["vggish"] = np.stack(rows) if rows else np.zeros((0, 128))
    th = [t for _, t in got.clips]
    thumbs = np.stack(th) if th and all(t is not None for t in th) else None
    return ClipSet(got.keys, feats, thumbs)


def _fmt(d: float) -> str:
    return "nan" if not np.isfinite(d) else f"{d:.3g}"


def memorisation_record(gen: ClipSet, train: ClipSet, heldout: ClipSet, *, png: Path | None,
                        percentile: float = DEFAULT_PERCENTILE, top: int = DEFAULT_TOP, tile: int = 64,
                        meta: dict | None = None) -> dict:
    """Score every space the three sets share, write the contact sheet, and return the record's section."""
    spaces = [s for s in SPACES if s in gen.feats and s in train.feats and s in heldout.feats]
    if not spaces:
        raise MemorisationError("memorisation: no feature space (I3D or VGGish) was computed")
    if not gen.keys:
        raise MemorisationError("memorisation: no generated samples")
    results = {s: memorisation_space(gen.feats[s], train.feats[s], heldout.feats[s], space=s, percentile=percentile)
               for s in spaces}
    primary = results[spaces[0]]
    order = np.argsort(np.nan_to_num(primary.sample_dist, nan=np.inf), kind="stable")[:top]
    closest = []
    for i in order:
        row = {"sample": gen.keys[i]}
        for s, r in results.items():
            j = int(r.sample_idx[i])
            row[s] = {"train": train.keys[j] if j >= 0 else None,
                      "distance": float(r.sample_dist[i]) if r.valid[i] else None, "flagged": bool(r.flagged[i])}
        closest.append(row)
    section = {
        "distance": DISTANCE,
        "percentile": percentile,
        "window": "one window per clip at frame 0 (a copy of a later part of a training clip may be missed)",
        "spaces": {s: r.summary() for s, r in results.items()},
        "counts": {"generated": len(gen.keys), "train": len(train.keys), "heldout": len(heldout.keys)},
        "closest": closest,
        "contact_sheet": None,
        **(meta or {}),
    }
    if png is not None and gen.thumbs is not None and train.thumbs is not None:
        rows = []
        for i in order:
            j = int(primary.sample_idx[i])
            if j < 0:
                continue
            caption = f"sample {gen.keys[i]}  |  train {train.keys[j]}  |  {spaces[0]} d={_fmt(primary.sample_dist[i])}"
            for s in spaces[1:]:
                k = int(results[s].sample_idx[i])
                caption += f"\n{s} nearest: {train.keys[k] if k >= 0 else '-'}  d={_fmt(results[s].sample_dist[i])}"
            flagged = any(bool(r.flagged[i]) for r in results.values())
            rows.append(SheetRow(gen.keys[i], gen.thumbs[i], train.keys[j], train.thumbs[j],
                                 caption + ("  FLAGGED" if flagged else ""), flagged))
        write_contact_sheet(png, rows, tile, titles=("generated sample", f"nearest training clip ({spaces[0]})"))
        section["contact_sheet"] = png.name
        section["contact_sheet_layout"] = {"tile": tile, "frames_per_side": THUMB_FRAMES,
                                           "left": "generated sample", "right": f"nearest training clip ({spaces[0]})"}
    return section


def run_memorisation(samples: Source, train: Source, heldout: Source, *, i3d: I3DFeatures | None,
                     vgg: VGGishFeatures | None, png: Path | None, frames: int = 16, limit: int | None = None,
                     train_limit: int | None = None, tile: int = 64, percentile: float = DEFAULT_PERCENTILE,
                     top: int = DEFAULT_TOP, workers: int = 0, errors: list[str] | None = None,
                     batch_size: int = 16, progress=None) -> dict:
    """The memorisation section of an eval record (see the module docstring); writes the contact sheet."""
    if i3d is None and vgg is None:
        raise MemorisationError("memorisation: no feature space selected (I3D and/or VGGish)")
    common = {"i3d": i3d, "vgg": vgg, "frames": frames, "tile": tile, "workers": workers, "errors": errors,
              "batch_size": batch_size, "progress": progress}
    gen = collect(samples, limit=limit, label="memorisation: samples", **common)
    tr = collect(train, limit=train_limit, label="memorisation: train", **common)
    if not tr.keys:
        raise MemorisationError(f"memorisation: no readable training clips in {train.describe()}")
    ho = collect(heldout, limit=limit, label="memorisation: held-out", **common)
    if not ho.keys:
        raise MemorisationError(f"memorisation: no readable held-out clips in {heldout.describe()}")
    meta = {"train": train.describe(), "heldout": heldout.describe()}
    if i3d is not None:
        meta["i3d"] = {"profile": i3d.profile.name, "weights_sha256": i3d.sha256}
    if vgg is not None:
        meta["vggish"] = {"profile": vgg.profile.name, "weights_sha256": vgg.sha256, "random_weights": vgg.random}
    return memorisation_record(gen, tr, ho, png=png, percentile=percentile, top=top, tile=tile, meta=meta)


def parse_spaces(spec: str) -> tuple[str, ...]:
    spaces = tuple(s.strip() for s in spec.split(",") if s.strip())
    bad = [s for s in spaces if s not in SPACES]
    if bad or not spaces:
        raise MemorisationError(f"--memorisation-spaces {spec!r}: use a comma-separated subset of {', '.join(SPACES)}")
    return spaces


def evaluate_memorisation(*, samples: str, reference: str | None, train: str | None, heldout: str | None,
                          spaces: str, i3d: I3DFeatures | None, vgg: VGGishFeatures | None, make_i3d, make_vgg,
                          png: Path, limit: int | None, train_limit: int | None, workers: int, batch_size: int,
                          errors: list[str], warnings: list[str], progress=None) -> tuple[dict, dict]:
    """`avbench eval --memorisation`: (scores, record section). The extractors of the eval are reused when it
    built them; otherwise `make_i3d()` / `make_vgg()` build them (weights resolved as for FVD/FAD)."""

    wanted = parse_spaces(spaces)
    train_spec, heldout_spec = default_sources(reference, train, heldout)
    i3d = (i3d or make_i3d()) if "i3d" in wanted else None
    vgg = (vgg or make_vgg()) if "vggish" in wanted else None
    section = run_memorisation(parse_source(samples), parse_source(train_spec), parse_source(heldout_spec),
                               i3d=i3d, vgg=vgg, png=png, limit=limit, train_limit=train_limit, workers=workers,
                               errors=errors, batch_size=batch_size, progress=progress,
                               frames=i3d.profile.frames if i3d is not None else 16)
    if vgg is not None and vgg.random:
        warnings.append("memorisation: VGGish ran with SEEDED RANDOM weights; audio neighbours are only a smoke test")
    for s, summ in section["spaces"].items():
        if summ["n_heldout"] < 100:
            warnings.append(f"memorisation ({s}): only {summ['n_heldout']} held-out clips, so the threshold "
                            f"(percentile {section['percentile']:g} of their distances) is close to their minimum")
    scores = {f"memorisation_{s}": summ["fraction_flagged"] for s, summ in section["spaces"].items()}
    return scores, section
