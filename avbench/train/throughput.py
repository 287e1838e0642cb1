"""Step timing (time spent waiting for data vs. total) and the peak FLOP rate that MFU divides by."""

from __future__ import annotations

import contextlib
import time

import torch

# Dense tensor-core peaks (FLOP/s) per GPU, from the vendors' data sheets (SXM parts, no sparsity).
# The one table MFU divides by: training logs and scripts/bench_model.py both read it.
PEAK_FLOPS = {
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},  # fp32 without TF32; TF32 is 495e12
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
}


def peak_flops(device: torch.device, precision: str) -> float:
    """The GPU's peak for `precision`, or 0 where unknown (CPU, unlisted GPUs): MFU is then not logged."""
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():
        if key in name:
            if precision == "fp32" and torch.backends.cuda.matmul.allow_tf32:
                return peaks["bf16"] / 2
            return peaks[precision]
    return 0.0


class StepTimer:
    """Wall time of one optimizer step and the part of it spent in `next(loader)`.

    On a GPU the step's kernels run asynchronously; `stop()` synchronises so the step time is real.
    """

    def __init__(self) -> None:
        self._t0 = 0.0
        self._wait = 0.0
        self.last_total = 0.0
        self.last_wait = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._wait = 0.0

    @contextlib.contextmanager
    def waiting(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self._wait += time.perf_counter() - t

    def stop(self) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self.last_total = time.perf_counter() - self._t0
        self.last_wait = self._wait


def count_training_flops(fn) -> int:
    """FLOPs of `fn()` (a forward + backward) as counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
