"""The base of every model Tailor reads from outside — job specs, wire messages between the
API and the agents, ONNX manifests: an unknown field is an error, not silently ignored, and
so are NaN and infinities (JSON's `NaN`, `Infinity`, or `1e999`), which no bound can check
and no database column holds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

ID_MAX = 2**31 - 1  # store.models: ids are 32-bit integers in PostgreSQL
SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy take a signed 64-bit seed
DAY_S = 86_400.0


class BlamedField(ValueError):
    """A check across several fields of a model that knows which one to blame: `field`, a
    dotted path below the model (`objectives.2`), which the API reports as the field at
    fault instead of the whole body."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def error_message(error: dict) -> str:
    """A pydantic error's message as Tailor shows it: a validator's own words, without the
    "Value error, " pydantic puts before them."""
    return error["msg"].removeprefix("Value error, ")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
