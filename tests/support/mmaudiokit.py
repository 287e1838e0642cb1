"""Files of the test-only `tiny-16k` MMAudio variant (seeded random weights in the released files' formats).

The writer lives in the package, `avbench.sample.tiny`, because `scripts/bench_text2av.py --tiny` needs it
too and scripts never import tests; this module keeps the tests' import path.
"""

from __future__ import annotations

from avbench.sample.tiny import TINY_MERGES, write_tiny_merges, write_tiny_mmaudio

__all__ = ["TINY_MERGES", "write_tiny_merges", "write_tiny_mmaudio"]
