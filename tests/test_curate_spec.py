"""Dataset spec validation: every error names the file and the key; the shipped manifests are valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avbench.curate.spec import HFSource, SpecError, SyntheticSource, YouTubeSearchSource, load_spec
from avbench.paths import manifests_dir

GOOD = """
name = "t"
description = "a test spec"
target_hours = 1.5

[[sources]]
kind = "url"
urls = ["http://127.0.0.1:1/a.mp4"]

[clip]
skip_start_s = 2.0
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(text)
    return p


def test_good_spec_parses_with_defaults(tmp_path):
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.name == "t" and spec.target_hours == 1.5
    assert spec.sources[0].urls == ("http://127.0.0.1:1/a.mp4",)
    assert spec.clip.skip_start_s == 2.0 and spec.clip.max_clip_s == 34.0 and spec.clip.min_clip_s == 1.6
    assert spec.output.fps == 10 and spec.output.sample_rate == 16000
    assert (spec.split.train, spec.split.val, spec.split.test) == (0.9, 0.05, 0.05)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        # unknown key in a section, with the allowed keys listed
        (("skip_start_s = 2.0", "skip_start = 2.0"), r"\[clip\] unknown key 'skip_start' \(allowed: max_clip_s, min_clip_s, skip_start_s\)"),
        # bad type
        (("target_hours = 1.5", 'target_hours = "lots"'), r"key 'target_hours' must be a number, got 'lots'"),
        (('urls = ["http://127.0.0.1:1/a.mp4"]', 'urls = "http://127.0.0.1:1/a.mp4"'), r"\[\[sources\]\] #1 key 'urls' must be a list"),
        # missing field
        (('description = "a test spec"\n', ""), r"missing required key 'description'"),
        (('urls = ["http://127.0.0.1:1/a.mp4"]', ""), r"\[\[sources\]\] #1 missing required key 'urls'"),
        # unknown source kind and unknown source key
        (('kind = "url"', 'kind = "torrent"'), r"unknown kind 'torrent' \(one of youtube, youtube-search, url, file, hf, synthetic\)"),
        (('kind = "url"', 'kind = "url"\nquery = "x"'), r"\[\[sources\]\] #1 unknown key 'query'"),
        # values
        (("skip_start_s = 2.0", "skip_start_s = 2.0\nmin_clip_s = 50.0"), r"\[clip\] needs 0 < min_clip_s <= max_clip_s"),
        (("[clip]", "[split]\ntrain = 0.5\n[clip]"), r"\[split\] train \+ val \+ test must be non-negative and sum to 1"),
    ],
)
def test_errors_name_file_and_key(tmp_path, edit, pattern):
    old, new = edit
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    assert re.search(pattern, msg), msg
    assert "\n" not in msg


def test_no_sources_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match=r"missing required key 'sources'"):
        load_spec(_write(tmp_path, 'name = "x"\ndescription = "d"\ntarget_hours = 1\n'))
    with pytest.raises(SpecError, match=r"spec.toml: not valid TOML"):
        load_spec(_write(tmp_path, "name = \n"))
    with pytest.raises(SpecError, match=r"file not found"):
        load_spec(tmp_path / "missing.toml")


def test_unknown_spec_name_says_where_it_looked():
    with pytest.raises(SpecError, match=r"no dataset spec named 'no-such-dataset'.*manifests/no-such-dataset.toml"):
        load_spec("no-such-dataset")


def test_spec_hash_ignores_formatting(tmp_path):
    a = load_spec(_write(tmp_path, GOOD))
    b = load_spec(_write(tmp_path, "# a comment\n" + GOOD.replace("target_hours = 1.5", "target_hours   =   1.50")))
    c = load_spec(_write(tmp_path, GOOD.replace("target_hours = 1.5", "target_hours = 2")))
    assert a.spec_hash == b.spec_hash != c.spec_hash


def test_shipped_manifests():
    names = sorted(p.stem for p in manifests_dir().glob("*.toml"))
    assert {"concerts", "callofduty", "demo"} <= set(names)
    concerts = load_spec("concerts")
    assert concerts.target_hours == 64.0
    assert len(concerts.sources) >= 6
    # Never invented ids: the concerts set is described only by searches.
    assert all(isinstance(s, YouTubeSearchSource) for s in concerts.sources)
    assert any(s.creative_commons_only for s in concerts.sources)
    assert all(s.min_duration_s >= 60 for s in concerts.sources)
    assert (concerts.clip.skip_start_s, concerts.clip.max_clip_s, concerts.clip.min_clip_s) == (10.0, 34.0, 1.6)
    assert (concerts.split.train, concerts.split.val, concerts.split.test) == (0.9, 0.05, 0.05)
    assert concerts.output.sizes == (64, 256) and concerts.output.fps == 10

    cod = load_spec("callofduty")
    assert cod.target_hours == 13.0
    hf = [s for s in cod.sources if isinstance(s, HFSource)]
    assert [(s.repo, s.pattern) for s in hf] == [("alejandroparedeslatorre/CallOfDuty-AudioVideo-Dataset", "*.mp4")]
    assert all(isinstance(s, (HFSource, YouTubeSearchSource)) for s in cod.sources)

    demo = load_spec("demo")
    (syn,) = demo.sources
    assert isinstance(syn, SyntheticSource) and syn.count == 10
    assert (syn.min_duration_s, syn.max_duration_s) == (20.0, 40.0)
    assert (demo.split.train, demo.split.val, demo.split.test) == (0.6, 0.2, 0.2)
    assert demo.output.sizes == (64, 256)
    for text in (manifests_dir() / "concerts.toml").read_text(), (manifests_dir() / "callofduty.toml").read_text():
        assert "ids" not in re.findall(r"^\s*(\w+)\s*=", text, flags=re.M)


def test_spec_name_is_found_past_a_directory_of_the_same_name(tmp_path, monkeypatch):
    # `avbench download demo --root demo` leaves a directory `demo` in the working directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert load_spec("demo").name == "demo"
    with pytest.raises(SpecError, match=r"is a directory; pass the path of a dataset spec"):
        load_spec(str(tmp_path / "demo"))
