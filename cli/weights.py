"""Reading a saved PyTorch state_dict the CLI is handed (`tailor arch export --weights`) or
downloads (`tailor export`): anything that is not one ends the command in one line naming it."""

from __future__ import annotations

from pathlib import Path

from cli.support import fail


def read_state_dict(path: Path, label: str) -> dict:
    """The state_dict saved at `path` (loaded weights-only, on the CPU); exit 2 with
    `label` (how the user knows the file, e.g. "--weights w.pt") and what is wrong."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        fail(f"cannot read {label}: {exc.strerror or exc}")
    except EOFError:
        fail(f"{label} is empty or cut short: not a saved state_dict")
    except pickle.UnpicklingError:  # torch's message is a page on weights_only
        fail(
            f"{label} is not a state_dict saved by torch.save (or holds objects a "
            "weights-only load refuses)"
        )
    except Exception as exc:  # whatever torch.load makes of a file that is not its own
        fail(f"{label} is not a saved state_dict: {str(exc).splitlines()[0]}")
    if not isinstance(state, dict):
        fail(f"{label} holds a {type(state).__name__}, not a state_dict")
    return state


def load_problem(model, state: dict) -> str | None:
    """Load `state` into `model`; why it does not fit (None: loaded)."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        # load_state_dict's first line only names the model; the next says what differs
        return " ".join(line.strip() for line in str(exc).splitlines()[:2])[:300]
    return None
