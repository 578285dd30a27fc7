"""The `tailor` command line.

Sub-commands are grouped by owner: `tailor arch`, `tailor train`, `tailor mad` and
`tailor demo` live in `orchestrator/commands/`; `tailor serve` comes from `api.cli` and
`tailor agent` from `device_agent.cli` when those packages provide them. Heavy imports
(torch) happen inside the commands that need them, so `tailor agent` starts fast on a laptop
beside a phone. Errors are one line on stderr and exit code 2, never a stack trace.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Tailor: evolve small language-model architectures for real phones.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _register(module: str, optional: bool = False) -> None:
    """Let a package add its commands; optional packages may not provide any yet."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if optional and exc.name == module:
            return
        raise
    mod.register(app)


for _module in ("orchestrator.commands.arch", "orchestrator.commands.quality",
                "orchestrator.commands.demo", "orchestrator.commands.service",
                "orchestrator.commands.client"):
    _register(_module)
_register("api.cli", optional=True)
_register("device_agent.cli", optional=True)


if __name__ == "__main__":
    app()
