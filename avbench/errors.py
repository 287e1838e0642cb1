"""The one error hierarchy of avbench, and what each exit code means.

Every error avbench raises on purpose (bad input, a missing file, a refused checkpoint, a source that
cannot be fetched) is an `AvbenchError`; the CLI prints those as one line and exits with the error's
`exit_code`. Anything else is a bug and keeps its traceback. The subclasses also derive from the
built-in exception they replaced (ValueError, RuntimeError, ...) so library callers that caught those
keep working.

Exit codes (each means one thing; the README's table is this one):
    0  success
    1  the run finished but produced failures: sources failed under --strict, nothing was built,
       a run stopped on a non-finite loss
    2  bad input: arguments, spec, lock file, config, checkpoint or weights the command cannot use
    3  transient failures remain: rerun the same command to retry them
  128+N  stopped by signal N after writing a checkpoint (rerun to resume)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TRANSIENT = 3


class AvbenchError(Exception):
    """Base of every deliberate avbench error; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_BAD_INPUT


# ---- curation -------------------------------------------------------------------------------------
class CurateError(AvbenchError):
    """Dataset curation: specs, lock files, sources, stages."""


class SpecError(CurateError, ValueError):
    """A dataset spec that cannot be used (names the file and the key)."""


class LockError(CurateError, ValueError):
    """A lock file that cannot be read or is inconsistent."""


class ResolveError(CurateError, RuntimeError):
    """A search or hub listing that cannot run (offline, tool missing)."""


class SourceFailure(CurateError):
    """One source failed in one stage. `cls` is "permanent" (retrying cannot help) or "transient"."""

    def __init__(self, cls: str, message: str):
        if cls not in ("permanent", "transient"):
            raise ValueError(f"failure class must be permanent or transient, not {cls!r}")
        super().__init__(message)
        self.cls = cls
        self.message = message


class ToolMissingError(CurateError, RuntimeError):
    """An external program (ffmpeg) that is neither on PATH nor shipped."""


# ---- data / checkpoints / models ------------------------------------------------------------------
class DataError(AvbenchError, ValueError):
    """A dataset root, index or shard that cannot be read (corrupt, outside the root, wrong digest)."""


class CheckpointError(AvbenchError, RuntimeError):
    """A checkpoint that is unreadable, corrupt, unsafe to unpickle or of the wrong kind."""


class ModelConfigError(AvbenchError, ValueError):
    """A model configuration that does not describe a buildable model."""


# ---- training / sampling --------------------------------------------------------------------------
class ConfigError(AvbenchError, ValueError):
    """A training or command config that cannot be used."""


class TrainError(AvbenchError, RuntimeError):
    """Training stopped for a reason the user must act on."""

    exit_code = EXIT_FAILED


class SampleError(AvbenchError, ValueError):
    """Sampling inputs (conditions, sampler options) that cannot be used."""


# ---- metrics --------------------------------------------------------------------------------------
class MetricsError(AvbenchError, ValueError):
    """An evaluation that cannot be computed as asked (sets too small, protocol mismatch, bad folder)."""


class WeightsError(MetricsError, RuntimeError):
    """Pretrained weights that are missing, cannot be fetched, or fail their checksum."""


class NotADatasetRoot(DataError):
    """A folder given as a dataset root that holds none of a root's files (lock.csv, records/, shards/)."""


# The two classes of SourceFailure, as stored in failure records and source records.
PERMANENT, TRANSIENT = "permanent", "transient"


class MissingInputError(AvbenchError, FileNotFoundError):
    """A file or folder the user named (an option, a config value) that does not exist. Still a
    FileNotFoundError, so callers that caught that keep working."""
