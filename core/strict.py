"""The base of every model Tailor reads from outside — job specs, wire messages between the
API and the agents, ONNX manifests: an unknown field is an error, not silently ignored, and
so are NaN and infinities (JSON's `NaN`, `Infinity`, or `1e999`), which no bound can check
and no database column holds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

DEVICE_CLASS_MAX_CHARS = 128  # store.models: devices.model, profiling_tasks.device_class
DEVICE_NAME_MAX_CHARS = 128  # store.models: devices.name
ID_MAX = 2**31 - 1  # store.models: ids are 32-bit integers in PostgreSQL
SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy take a signed 64-bit seed
DAY_S = 86_400.0


class FieldError(ValueError):
    """A check across several fields of a model that knows which one to blame: `field`, a
    dotted path below the model (`objectives.2`), which the API reports as the field at
    fault instead of the whole body."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def device_class_problem(name: str) -> str | None:
    """Why `name` cannot be a device class (None: it can). A class is what an agent enrolls
    as (`DeviceProperties.model`) and what a job names in an objective, inside brackets
    (`decode_ms@128[host]`, core.metrics.PATTERN): one rule for both ends, so no phone
    enrolls as a class no job can name."""
    if not 1 <= len(name) <= DEVICE_CLASS_MAX_CHARS or name != name.strip():
        return f"must be 1 to {DEVICE_CLASS_MAX_CHARS} characters without surrounding spaces"
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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
