"""Helpers every `tailor` sub-command uses: one-line errors with exit code 2, JSON output."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))
