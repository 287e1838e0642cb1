"""Split assignment: a salted hash of the source id, so one source never spans two splits.

`u = sha256("<salt>:<source_id>")` read as a fraction in [0, 1) picks the split by the cumulative
fractions train → val → test. The assignment depends only on the salt, the fractions and the id, so it
is the same on every machine, for every partition, and does not move when other sources are added.
"""

from __future__ import annotations

import hashlib

from avbench.curate.spec import SplitPolicy

SPLITS = ("train", "val", "test")


def unit_hash(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings (64 bits of sha256)."""
    digest = hashlib.sha256(":".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(source_id: str, policy: SplitPolicy) -> str:
    u = unit_hash(policy.salt, source_id)
    if u < policy.train:
        return "train"
    if u < policy.train + policy.val:
        return "val"
    return "test" if policy.test > 0 else ("val" if policy.val > 0 else "train")


def order_key(salt: str, key: str) -> str:
    """Sort key for the global sample order inside a split: shuffled, but fixed by the salt."""
    return hashlib.sha256(f"order:{salt}:{key}".encode("utf-8")).hexdigest()
