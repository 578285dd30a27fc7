"""The agent's config directory: its device token per server (with the device properties
it enrolled with, so a restart can tell they changed) and its ADB RSA key (`adbkey`,
`adbkey.pub`), kept between runs.

Default `~/.config/tailor-agent` (TAILOR_AGENT_HOME or --config-dir override). The token
file is always mode 0600, even where an older file had wider permissions: it is written to a
fresh 0600 file that then replaces it.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path


def config_dir(override: Path | None = None) -> Path:
    """The directory, created if need be; an OSError (its `filename` the path) where it is
    a file or cannot be written, before anything is enrolled that could not be saved."""
    path = override or Path(
        os.environ.get("TAILOR_AGENT_HOME", Path.home() / ".config" / "tailor-agent")
    )
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable", str(path))
    return path


def _token_file(folder: Path, server: str, identity: str) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in f"{server}-{identity}")[:150]
    return folder / f"device-{safe}.json"


def load_token(folder: Path, server: str, identity: str) -> dict | None:
    path = _token_file(folder, server, identity)
    return json.loads(path.read_text()) if path.exists() else None


def save_token(
    folder: Path,
    server: str,
    identity: str,
    device_id: int,
    token: str,
    properties: dict | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = _token_file(folder, server, identity)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode of os.open applies only when it creates the file
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "server": server,
                "device_id": device_id,
                "device_token": token,
                "properties": properties,
            },
            f,
        )
    os.replace(partial, path)  # never a half-written token, never the old mode


def adb_key_path(folder: Path) -> Path:
    """The host's ADB private key; the phone remembers its public half after "Allow"."""
    return folder / "adbkey"
