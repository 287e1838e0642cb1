"""Leaderboard grouping: by track, flags for rows that differ from their track, one protocol per table.

The records here are hand-written test inputs (shaped like `run_eval`'s), not results: their numbers
only have to be distinguishable in the output.
"""

import csv
import json

from avbench.metrics import leaderboard


def _record(name, date, *, track=None, fingerprint="f" * 64, protocol="avbench", track_sha="a" * 64, scores=None):
    rec = {"name": name, "date": date, "scores": scores or {"fvd": 1.5}, "protocols": {},
           "reference_fingerprint": fingerprint}
    if protocol is not None:
        rec["protocol"] = {"name": protocol, "seed": 0 if protocol != "avbench" else None}
    if track:
        rec["track"] = {"name": track, "sha256": track_sha}
    return rec


def _export(tmp_path, records):
    d = tmp_path / "results"
    d.mkdir()
    for r in records:
        (d / f"{r['name']}.json").write_text(json.dumps(r))
    n = leaderboard.export(d, tmp_path / "lb.csv", tmp_path / "lb.md")
    assert n == len(records)
    return ({r["name"]: r for r in csv.DictReader((tmp_path / "lb.csv").open())},
            (tmp_path / "lb.md").read_text())


def _tables(md: str) -> list[list[str]]:
    tables, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    return tables + ([cur] if cur else [])


def test_rows_differing_from_the_track_majority_are_flagged(tmp_path):
    rows, md = _export(tmp_path, [
        _record("r1", "2026-01-01", track="t", fingerprint="b" * 64),  # earliest, but in the minority
        _record("r2", "2026-01-02", track="t"),
        _record("r3", "2026-01-03", track="t"),
        _record("r4", "2026-01-04", track="t", protocol="styleganv"),
        _record("r5", "2026-01-05", track="t", track_sha="c" * 64),
        _record("u1", "2026-01-06", track="u", fingerprint="1" * 64),  # a tie: the earliest row wins
        _record("u2", "2026-01-07", track="u", fingerprint="2" * 64),
    ])
    assert rows["r2"]["flag"] == rows["r3"]["flag"] == rows["u1"]["flag"] == ""
    assert rows["r1"]["flag"].startswith("reference fingerprint bbbbbbbbbbbb differs from track t's ffffffffffff")
    assert "4 of 5 rows" in rows["r1"]["flag"]
    assert rows["r4"]["flag"].startswith("protocol styleganv differs from track t's avbench")
    assert rows["r5"]["flag"].startswith("track file sha256 cccccccccccc differs")
    assert rows["u2"]["flag"].startswith("reference fingerprint 222222222222 differs from track u's 111111111111")
    t_part = md.split("### Track u")[0]
    main, _, flagged = t_part.partition("Not comparable with track t")
    assert "| r2 |" in main and "| r3 |" in main and not any(f"| {n} |" in main for n in ("r1", "r4", "r5"))
    assert all(f"| {n} |" in flagged for n in ("r1", "r4", "r5"))
    # the flagged styleganv row is in a table of its own protocol
    sg = next(t for t in _tables(md) if "fvd (styleganv)" in t[0])
    assert len(sg) == 3 and "| r4 |" in sg[2] and sg[0].endswith("| flag |")


def test_numbers_of_different_protocols_never_share_a_column(tmp_path):
    rows, md = _export(tmp_path, [
        _record("a", "2026-01-01"),
        _record("m", "2026-01-02", protocol="mmdiffusion", scores={"fvd": 2.5, "kvd": 0.1}),
        _record("old", "2025-01-01", protocol=None),  # written before protocols were recorded: avbench's rule
        _record("x", "2026-01-03", scores={"fvd": 3.5, "fad_audioclip": 7.25}),
    ])
    assert rows["old"]["protocol"] == "avbench" and rows["m"]["protocol_seed"] == "0"
    assert rows["x"]["fad_audioclip"] == "7.25" and rows["x"]["other_scores"] == ""  # its own column, never "fad"
    tables = _tables(md)
    assert len(tables) == 2
    for t in tables:
        protocol = "avbench" if "fvd (avbench)" in t[0] else "mmdiffusion"
        names = {line.split("|")[1].strip() for line in t[2:]}
        assert names == ({"a", "old", "x"} if protocol == "avbench" else {"m"})
        scores = [c.strip() for c in t[0].strip("|").split("|") if "(" in c]
        assert scores and all(c.endswith(f"({protocol})") for c in scores)
    avb = next(t for t in tables if "fvd (avbench)" in t[0])
    assert "fad_audioclip (avbench)" in avb[0] and "7.25" in next(line for line in avb if "| x |" in line)
    assert "### No track · protocol mmdiffusion" in md
