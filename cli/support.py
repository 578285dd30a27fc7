"""Helpers every `tailor` sub-command uses: one-line errors with exit code 2, JSON output,
reading the files and JSON a user hands over, and the output folders they name."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def read_text(path: str | Path) -> str:
    """A file's text ('-' = stdin); exit 2 naming the file when it cannot be read or is not
    UTF-8 text."""
    try:
        return sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(f"{path} is not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}")


def parse_json(text: str, source: str | Path) -> Any:
    """`text` as JSON; exit 2 naming `source` (a file, or an option such as --config) for
    anything `json.loads` rejects: bad syntax, nesting too deep, an integer too long."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        fail(f"{source} is not valid JSON we can read: nested too deeply")
    except ValueError as exc:  # e.g. an integer past sys.get_int_max_str_digits()
        fail(f"{source} is not valid JSON we can read: {str(exc).split(';')[0]}")


def not_json(value: Any, path: str = "") -> str | None:
    """Where `value` (parsed YAML or JSON) holds something JSON cannot carry, and what it is:
    NaN or an infinity, a date, a set, bytes, a key that is not a string (an integer key
    JSON writes as one); None when it has nothing of the kind."""
    where = path or "the top level"
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value}, which JSON cannot carry"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) and (type(key) is not int):
                return (
                    f"{where} has the key {key!r} ({type(key).__name__}); JSON keys are "
                    "strings: quote it"
                )
            if problem := not_json(item, f"{path}.{key}" if path else str(key)):
                return problem
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if problem := not_json(item, f"{path}[{index}]"):
                return problem
        return None
    return f"{where} is a {type(value).__name__} ({value!s:.40}), which JSON cannot carry: quote it"


def output_dir(out: Path, option: str = "--out") -> Path:
    """`out` made as a writable folder; exit 2 naming the option when it cannot be."""
    if out.exists() and not out.is_dir():
        fail(f"{option} {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {option} {out}: {exc.strerror or exc}")
    if not os.access(out, os.W_OK | os.X_OK):
        fail(f"{option} {out} is not writable")
    return out
