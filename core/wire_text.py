"""Text agents and clients send that Tailor stores and shows, and names jobs refer to: which
device classes and device names are allowed (one rule for every end that meets them), and
terminal escapes taken out of free text."""

from __future__ import annotations

import re

DEVICE_CLASS_MAX_CHARS = 128  # store.models: devices.model, profiling_tasks.device_class
DEVICE_NAME_MAX_CHARS = 128  # store.models: devices.name
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def device_class_problem(name: str, stored: bool = False) -> str | None:
    """Why `name` cannot be a device class (None: it can). A class is what an agent enrolls
    as (`DeviceProperties.model`) and what a job names in an objective, inside brackets
    (`decode_ms@128[host]`, core.metrics.PATTERN): one rule for both ends, so no phone
    enrolls as a class no job can name. `stored`: a class in a spec the database already
    holds keeps the rule it was accepted under (length, no surrounding spaces), so a job
    stored before the rest of the rule stays readable."""
    if not 1 <= len(name) <= DEVICE_CLASS_MAX_CHARS or name != name.strip():
        return f"must be 1 to {DEVICE_CLASS_MAX_CHARS} characters without surrounding spaces"
    if stored:
        return None
    if not name.isprintable():
        return "must not hold control characters"
    if "[" in name or "]" in name:
        return "must not hold brackets (an objective names its device class in brackets)"
    return None


def device_name_problem(name: str) -> str | None:
    """Why `name` cannot name a device (None: it can): the dashboard and the CLI show it, so
    it is refused, not cleaned, when it holds control characters (a typo is named)."""
    if not 1 <= len(name) <= DEVICE_NAME_MAX_CHARS:
        return f"must be 1 to {DEVICE_NAME_MAX_CHARS} characters, got {len(name)}"
    if name != name.strip():
        return "must not begin or end with spaces"
    if not name.isprintable():
        return "must not hold control characters"
    return None


def require(problem: str | None, what: str, value: str) -> str:
    """`value` when `problem` (one of the checks above) is None, else ValueError
    "<what> '<value>' <problem>", the words every end (API, job spec, CLI) shows."""
    if problem:
        raise ValueError(f"{what} {value[:40]!r} {problem}")
    return value


def plain_text(text: str) -> str:
    """Free text an agent sends that is stored and shown (a runner's line, a failure's
    reason), without terminal colour codes or control characters (lines and tabs kept)."""
    return _CONTROL.sub("", _ANSI.sub("", text)).strip()
