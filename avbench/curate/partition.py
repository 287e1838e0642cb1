"""`--partition i/N`: the deterministic slice of sources one job of a SLURM array processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, TypeVar

from avbench.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Partition:
    index: int  # 0-based
    count: int

    @classmethod
    def parse(cls, text: "str | Partition | None") -> "Partition":
        """'2/8' → Partition(2, 8); None → the whole set. Index is 0-based, like SLURM_ARRAY_TASK_ID.
        A Partition is returned as it is, so an API can take either."""
        if isinstance(text, Partition):
            return text
        if text is None or text == "":
            return cls(0, 1)
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise ConfigError(f"--partition {text!r}: expected I/N with integers, e.g. 0/4") from None
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"--partition {text!r}: need 0 <= I < N")
        return cls(i, n)

    def select(self, items: Iterable[T], key=lambda x: x) -> list[T]:
        """Round-robin over the items sorted by `key`: balanced, and the same on every machine."""
        ordered = sorted(items, key=key)
        return ordered[self.index :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
