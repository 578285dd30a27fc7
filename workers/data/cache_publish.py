"""How a token-cache entry appears: built once, in a temporary folder renamed into place
(atomic). A lock file makes a second local builder wait and then reuse the first one's
result; should two builders still race (separate nodes on a shared disk), the rename of the
second fails and it uses the winner's folder."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def is_complete(path: Path) -> bool:
    """An entry is complete once its meta.json exists (the build writes it last)."""
    return (path / "meta.json").exists()


def publish_once(final: Path, build: Callable[[Path], None]) -> float | None:
    """Build `final` once among local workers; the build's seconds, or None if none."""
    if is_complete(final):
        return None
    root = final.parent
    with _lock(root / f".{final.name}.lock"):
        if is_complete(final):  # another local worker may have built it meanwhile
            return None
        build_started = time.perf_counter()
        tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            build(tmp)
            try:
                os.rename(tmp, final)
            except OSError:  # a builder elsewhere won the race: use its entry
                if not is_complete(final):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return round(time.perf_counter() - build_started, 3)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
