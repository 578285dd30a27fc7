"""One agent per phone: an exclusive fcntl lock on a file named after the phone, held for
the agent's life (the kernel drops it when the process dies, so a crash leaves no stale
lock). Two agents on one phone would fight over its CPUs and thermal budget, and each
would measure the other's load.

Lock files live in $TAILOR_AGENT_RUNTIME_DIR, else $XDG_RUNTIME_DIR/tailor-agent, else
/tmp/tailor-agent-UID: per machine, whatever config directory each agent uses.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path


class PhoneBusy(RuntimeError):
    """Another agent on this machine holds this phone; the message names it."""


def runtime_dir() -> Path:
    if os.environ.get("TAILOR_AGENT_RUNTIME_DIR"):
        return Path(os.environ["TAILOR_AGENT_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "tailor-agent"
    return Path(tempfile.gettempdir()) / f"tailor-agent-{os.getuid()}"


class PhoneLock:
    """`PhoneLock("R5CX1234ABC").acquire()`; raises PhoneBusy if another agent has it."""

    def __init__(self, phone_id: str, folder: Path | None = None):
        self.phone_id = phone_id
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in phone_id)[:150]
        self.path = (folder or runtime_dir()) / f"phone-{safe}.lock"
        self.fd: int | None = None

    def acquire(self) -> "PhoneLock":
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise PhoneBusy(
                f"another agent already measures phone {self.phone_id} "
                f"({holder}); stop it first, or use another phone "
                f"(lock: {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None
