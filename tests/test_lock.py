"""`make install` installs exactly requirements.lock: every distribution in the environment the
suite runs in is in the lock at the locked version, and every locked one is installed.

A suite that passed with one set of versions says nothing about the next release of
onnxruntime or torch; CI must run what was run here.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
INSTALLED_BY_MAKE = Path(sys.prefix) / ".tailor-installed"  # the Makefile's stamp
NOT_LOCKED = {"tailor", "pip"}  # the project itself; pip is pinned by the Makefile (PIP_SPEC)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", LOCK.read_text(), re.MULTILINE)
    return {canonical(name): version for name, version in pins}


def installed() -> dict[str, str]:
    """What is installed in this environment's site-packages (not whatever else is on
    sys.path: importing setuptools puts its vendored distributions there)."""
    where = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions(path=where)}


def test_the_lock_pins_every_requirement_once_with_hashes():
    text = LOCK.read_text()
    entries = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}"
        r"(?: \\)?\n)+)",
        text,
        re.MULTILINE,
    )
    assert len(entries) == len(locked()) > 100
    assert locked()["torch"].endswith("+cpu")  # never the multi-GB CUDA build


@pytest.mark.skipif(
    not INSTALLED_BY_MAKE.exists(),
    reason="not the environment `make install` made (no .tailor-installed)",
)
def test_make_install_installed_exactly_the_lock():
    want, have = locked(), installed()
    extra = {n: v for n, v in have.items() if n not in want and n not in NOT_LOCKED}
    missing = {n: v for n, v in want.items() if n not in have}
    different = {n: (want[n], have[n]) for n in want.keys() & have.keys() if want[n] != have[n]}
    assert not (extra or missing or different), (
        f"the environment differs from {LOCK.name} (run `make clean install`): installed but "
        f"not locked {extra}; locked but not installed {missing}; (locked, installed) "
        f"{different}"
    )
    assert "tailor" in have
