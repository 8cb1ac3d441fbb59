"""How PyTorch's CPU threads wait for work: a short spin, then sleep.

PyTorch's CPU build runs its intra-op thread pool on GNU OpenMP (libgomp), whose idle
threads spin for 300,000 iterations before they sleep. On a 2-core laptop where anything
else runs (a browser, another job in another session), the spinning threads take turns
with that process at every parallel region: a training step of `ours` went from 0.40 s
to 8.8 s (22x), `reference` collapsed alike. A short spin keeps the idle speed and
removes the collapse (`bench/threads.py`, measured here):

    ours, s/step       idle    busy   |  libgomp default 0.40 / 8.8,  OMP_WAIT_POLICY=PASSIVE
    GOMP_SPINCOUNT=1000 0.40   0.82   |  0.44 / 0.76 (10% slower idle),  1 thread 0.70 / 0.70

libgomp reads its environment once, when `import torch` loads it, so this must run before
torch is imported; every `advcritic` entry point calls it first. A value the user set
(GOMP_SPINCOUNT or OMP_WAIT_POLICY) is always kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

# Spins before a waiting libgomp thread sleeps (libgomp's default: 300,000).
SPIN_COUNT = "1000"
_USER_CHOICES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def configure_thread_waiting(environ: MutableMapping[str, str] | None = None) -> bool:
    """Sets the short spin unless the user chose a waiting policy; False if it is too late
    (torch already imported in this process) or the user's choice was kept."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or any(name in environ for name in _USER_CHOICES):
        return False
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
