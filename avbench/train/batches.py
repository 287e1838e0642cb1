"""The stream of training batches, with a position that a checkpoint can record and restore.

The loader is consumed in *epochs* of a fixed number of batches per rank (`data.epoch_batches`); epoch
`e` of rank `r` is a fresh loader seeded from (seed, r, e), over resampled shards. Two consequences:

- every rank draws exactly the same number of batches (the loop is step-based and an epoch never ends
  early on one rank only), so DDP never hangs at an epoch boundary;
- the data position is (epoch, batches consumed in it). Resuming rebuilds epoch `e` with its seed and
  skips the consumed batches, which reproduces the uninterrupted stream exactly; the cost is decoding
  at most `epoch_batches - 1` batches once at resume.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any, Callable, Iterable, Iterator

import torch

from avbench.errors import DataError


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across Python runs, unlike hash())."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class BatchStream:
    def __init__(self, make_epoch: Callable[[int], Iterable[Any]], *, epoch: int = 0, index: int = 0):
        self._make_epoch = make_epoch
        self.epoch = epoch
        self.index = index  # batches consumed in `epoch`
        self._skip = index
        self._it: Iterator[Any] | None = None
        self.batches_seen = 0  # batches handed out by this process (resume skips not counted)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Any:
        # A DataLoader draws its base seed from the global torch RNG when an epoch's iterator starts; fork
        # so that where an epoch starts (fresh run vs. resume) never shifts the training step's noise.
        with torch.random.fork_rng(devices=[]):
            return self._next()

    def _next(self) -> Any:
        empty_epochs = 0
        while True:
            if self._it is None:
                self._it = iter(self._make_epoch(self.epoch))
                for _ in range(self._skip):  # resume: replay the consumed part of this epoch
                    next(self._it)
                self._skip = 0
            try:
                batch = next(self._it)
            except Exception as exc:  # noqa: BLE001 - StopIteration or a loader failure: the epoch ends here
                failure = None if isinstance(exc, StopIteration) else exc
                if failure is not None:
                    # e.g. a damaged shard the loader could not step over. Ending the epoch keeps all ranks
                    # stepping (no DDP hang) and stays deterministic: a resume replays the same failure.
                    warnings.warn(f"data loader failed in epoch {self.epoch} after {self.index} batches "
                                  f"({type(exc).__name__}: {exc}); skipping the rest of this epoch", stacklevel=2)
                if self.index == 0:
                    empty_epochs += 1
                    if empty_epochs >= 2:
                        raise DataError(
                            f"the training data yielded no batch in epoch {self.epoch}: check --data "
                            "(no readable shards for this split?)"
                        ) from failure
                self._it = None
                self.epoch += 1
                self.index = 0
                continue
            self.index += 1
            self.batches_seen += 1
            return batch

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def seek(self, epoch: int, index: int) -> None:
        """Continue from a recorded position (before or instead of the one given at construction)."""
        self.epoch, self.index, self._skip, self._it = int(epoch), int(index), int(index), None
