"""Wire schemas shared by the API and the device agents.

This module is the whole contract between `api/` and `device_agent/`: the agent runs on a
laptop beside a phone, so it imports only pydantic here (no torch, no Ray, nothing from the
server). The API imports these same classes so the two ends can never drift apart.

Also defined here: the graph manifest that `workers/` writes beside every ONNX export. A
phone runner feeds the graphs from it without Python: names, dtypes and shapes of every
input and output, with symbolic dimensions spelled out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"
MANIFEST_FORMAT = "tailor.manifest/1"


class WireModel(BaseModel):
    """Every wire model rejects unknown fields: a typo must be an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- manifest


class TensorSpec(WireModel):
    """One graph input or output.

    `shape` holds ints for fixed dimensions and these symbols for variable ones:
    - "seq": the number of new tokens (L for prefill; always 1 in the decode graph),
    - "past": the number of tokens already held by an attention cache; a windowed
      attention layer caps it at `past_cap` (its window).
    """

    name: str
    dtype: Literal["int64", "float32", "float16"]
    shape: list[int | Literal["seq", "past"]]
    role: Literal["input_ids", "position", "logits", "cache"]
    past_cap: int | None = None


class GraphSpec(WireModel):
    file: str
    sha256: str
    size_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class GraphManifest(WireModel):
    """Written as manifest.json beside prefill.onnx and decode.onnx.

    The decode graph's cache outputs are the next step's cache inputs, in the same order
    (`cache_pairs` maps input name -> output name). `position` is the absolute index of the
    token being fed (0 for the first decode step after an empty prefill).
    """

    format: Literal["tailor.manifest/1"] = MANIFEST_FORMAT
    genome_hash: str
    vocab_size: int
    opset: int
    dtype: Literal["float32", "float16"]
    graphs: dict[Literal["prefill", "decode"], GraphSpec]
    cache_pairs: dict[str, str]
    params: int
    cache_bytes_per_token: int
    cache_bytes_fixed: int


# --------------------------------------------------------------------------- devices


class DeviceProperties(WireModel):
    """What the agent reads from the phone (`getprop`, `/proc`) or from the host."""

    backend: Literal["adb", "host"]
    model: str = Field(description="device class used in objectives, e.g. 'SM-S928B' or 'host'")
    manufacturer: str = ""
    soc: str = ""
    board: str = ""
    android_release: str = ""
    sdk: int | None = None
    abi: str = ""
    cpu_count: int = Field(ge=1)
    cpu_max_freq_khz: list[int] = Field(default_factory=list)
    ram_bytes: int = Field(ge=0)
    serial: str = ""


class EnrollRequest(WireModel):
    enroll_token: str = Field(min_length=1, max_length=512)
    name: str = Field(min_length=1, max_length=128)
    properties: DeviceProperties


class EnrollResponse(WireModel):
    device_id: int
    device_token: str
    heartbeat_interval_s: float


class HeartbeatResponse(WireModel):
    device_id: int
    state: Literal["active", "draining", "disabled"]
    server_time: datetime


# --------------------------------------------------------------------------- profiling


class ProfilingSpec(WireModel):
    """How one candidate is measured on one device (from the job's profiling spec)."""

    prefill_lengths: list[int] = Field(default_factory=lambda: [128, 512], min_length=1)
    decode_contexts: list[int] = Field(default_factory=lambda: [128, 512], min_length=1)
    warmup: int = Field(default=2, ge=0, le=100)
    repeats: int = Field(default=10, ge=1, le=1000)
    threads: int = Field(default=1, ge=1, le=64)
    cooldown_celsius: float = Field(default=45.0, description="wait before a run while hotter")


class ArtifactRef(WireModel):
    name: str
    sha256: str
    size_bytes: int
    url: str = Field(description="path under the API, e.g. /api/v1/artifacts/12/decode.onnx")


class ProfilingTask(WireModel):
    task_id: int
    job_id: int
    candidate_id: int
    genome_hash: str
    attempt: int
    lease_expires_at: datetime
    spec: ProfilingSpec
    manifest: GraphManifest
    artifacts: list[ArtifactRef]


class LeaseRequest(WireModel):
    lease_seconds: float | None = Field(default=None, gt=0, le=86_400)


class LeaseResponse(WireModel):
    task: ProfilingTask | None


class LatencyStat(WireModel):
    """Repeated timings of one graph at one length; samples in milliseconds."""

    length: int = Field(ge=1, description="L: prefill tokens, or decode context tokens")
    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int = Field(ge=1)
    samples_ms: list[float]
    peak_memory_bytes: int | None = None


class ThermalReading(WireModel):
    zone: str
    celsius: float


class MeasurementReport(WireModel):
    prefill: list[LatencyStat]
    decode: list[LatencyStat]
    peak_memory_bytes: int = Field(ge=0, description="max VmHWM of the runner over the task")
    runner: str = Field(description="e.g. 'onnxruntime_perf_test 1.20.0' or 'host onnxruntime'")
    thermal_before: list[ThermalReading] = Field(default_factory=list)
    thermal_after: list[ThermalReading] = Field(default_factory=list)
    wall_s: float = Field(ge=0)


class FailureReport(WireModel):
    reason: str = Field(min_length=1, max_length=4000)
    retryable: bool = True


class TaskAck(WireModel):
    task_id: int
    state: Literal["queued", "leased", "done", "failed"]
