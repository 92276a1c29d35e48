"""Progress lines for long dev-stack work: to stderr, with elapsed time, quiet when asked."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool = True, prefix: str = "fmesh-events dev") -> None:
        self.enabled = enabled
        self.prefix = prefix
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            print(f"[{self.prefix} {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
