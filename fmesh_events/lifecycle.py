"""How every component runs: supervised, restarting after a failure instead of exiting, under
a name that identifies this process to Pulsar."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

MAX_BACKOFF_SECONDS = 60.0
HEALTHY_SECONDS = 60.0  # a run this long resets the backoff


def process_name() -> str:
    """Unique per process and stable for its life (the pod name inside Kubernetes)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def supervised(what: str, stop: threading.Event, body: Callable[[], None],
               log: logging.Logger) -> None:
    """Run `body()` until `stop`; after it fails (Pulsar gone, leadership lost) start over
    after a delay that doubles up to a minute, and falls back after a healthy run."""
    backoff = 1.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            body()
        except Exception as error:
            log.error(f"{what} stopped; starting over", extra={"error": str(error),
                                                                "retry_in": backoff})
        if time.monotonic() - started > HEALTHY_SECONDS:
            backoff = 1.0
        stop.wait(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
