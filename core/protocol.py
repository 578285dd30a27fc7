"""Wire schemas shared by the API and the device agents, and the API's URL prefix.

This module is the whole contract between `api/` and `device_agent/`: the agent runs on a
laptop beside a phone, so it imports only pydantic (no torch, no Ray, nothing from the
server). The API imports these same classes so the two ends can never drift apart.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .manifest import GraphManifest
from .precision import DEFAULT_PRECISION, ExecutionProvider, Precision
from .strict import DAY_S, StrictModel
from .wire_text import (
    DEVICE_CLASS_MAX_CHARS,
    DEVICE_NAME_MAX_CHARS,
    device_class_problem,
    device_name_problem,
    plain_text,
    require,
)

API_PREFIX = "/api/v1"  # every route of the REST API lives under it
MAX_LENGTH = 1 << 20  # the longest prefill or decode context a task may ask for
MAX_LENGTHS = 32  # prefill lengths (and decode contexts) per task
MAX_SAMPLES = 10_000  # timings per length in one report (MeasurementSpec.repeats is <= 1000)
MAX_LEASE_SECONDS = 86_400  # the most an agent may ask for; servers cap lower
MAX_BYTES = 2**60  # memory sizes a device reports (an exbibyte: past any phone or host)


def artifact_url(candidate_id: int, name: str) -> str:
    """Where the API serves one of a candidate's artifacts (ONNX graphs, weights)."""
    return f"{API_PREFIX}/artifacts/{candidate_id}/{name}"


# --------------------------------------------------------------------------- devices


class DeviceProperties(StrictModel):
    """What the agent reads from the phone (`getprop`, `/proc`) or from the host."""

    backend: Literal["adb", "host"]
    model: str = Field(
        min_length=1,
        max_length=DEVICE_CLASS_MAX_CHARS,
        description="device class used in objectives, e.g. 'SM-S928B' or 'host'",
    )
    manufacturer: str = Field(default="", max_length=256)
    soc: str = Field(default="", max_length=256)
    board: str = Field(default="", max_length=256)
    android_release: str = Field(default="", max_length=64)
    sdk: int | None = Field(default=None, ge=0, le=10_000)
    abi: str = Field(default="", max_length=64)
    cpu_count: int = Field(ge=1, le=4096)
    cpu_max_freq_khz: list[int] = Field(default_factory=list, max_length=4096)
    ram_bytes: int = Field(ge=0, le=MAX_BYTES)
    serial: str = Field(default="", max_length=256)
    thermal_zones: list[str] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "the thermal zones (by type) the agent watches before measuring, chosen by name"
        ),
    )

    @field_validator("model")
    @classmethod
    def _a_class_a_job_can_name(cls, model: str) -> str:
        return require(device_class_problem(model), "device class", model)


class RunnerIdentity(StrictModel):
    """Which runner build took a measurement, so numbers of two builds are never mixed
    silently: its sha256, the argument parser its help showed, the per-run line format it
    printed, the onnxruntime release line those make, and the version where it says it."""

    name: str = Field(default="onnxruntime_perf_test", max_length=64)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    parser: str = Field(
        default="",
        max_length=32,
        description="'getopt' (up to 1.22) or 'abseil' (1.23+) for onnxruntime_perf_test",
    )
    per_run_format: str = Field(
        default="",
        max_length=32,
        description="'time_cost' (up to 1.23) or 'submission_total' (1.24+)",
    )
    release_line: str = Field(
        default="", max_length=32, description="e.g. '1.19-1.22', '1.23', '1.24+'"
    )
    onnxruntime_version: str | None = Field(default=None, max_length=64)


class DeviceReadiness(StrictModel):
    """The agent's own verdict on its device (the phone's preflight): ready to measure, or
    why not and how to fix it; sent with every heartbeat."""

    ready: bool
    reason: str = Field(default="", max_length=2000)
    fix: str = Field(default="", max_length=2000)
    runner: RunnerIdentity | None = None


class EnrollRequest(StrictModel):
    enroll_token: str = Field(min_length=1, max_length=512)
    name: str = Field(min_length=1, max_length=DEVICE_NAME_MAX_CHARS)
    properties: DeviceProperties

    @field_validator("name")
    @classmethod
    def _a_name_to_show(cls, name: str) -> str:
        return require(device_name_problem(name), "device name", name)


class EnrollResponse(StrictModel):
    device_id: int
    device_token: str
    heartbeat_interval_s: float


class HeartbeatRequest(StrictModel):
    """An agent that (re)starts with a saved token sends what it reads from the phone now
    (an OS update, another runner): the device row is refreshed without enrolling again."""

    properties: DeviceProperties | None = None
    readiness: DeviceReadiness | None = Field(
        default=None, description="the device's preflight verdict (None: not checked)"
    )


class HeartbeatResponse(StrictModel):
    device_id: int
    state: Literal["active", "draining", "disabled"]
    server_time: datetime
    paused_until: datetime | None = Field(
        default=None, description="no leases until then: the device reported a device error"
    )
    paused_reason: str | None = None


# --------------------------------------------------------------------------- profiling


class MeasurementSpec(StrictModel):
    """How one candidate is measured on one device: the part of a job's `profiling` block
    that travels with each profiling task (core.job_spec.ProfilingSpec adds the rest)."""

    prefill_lengths: list[int] = Field(
        default_factory=lambda: [128, 512], min_length=1, max_length=MAX_LENGTHS
    )
    decode_contexts: list[int] = Field(
        default_factory=lambda: [128, 512], min_length=1, max_length=MAX_LENGTHS
    )
    warmup: int = Field(
        default=2, ge=0, le=100, description="untimed runs at the start of each runner process"
    )
    repeats: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="timed runs in each runner process, after the warm-up",
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=20,
        description="fresh runner processes per (graph, length), each "
        "doing warmup + repeats runs: spread across processes, peak memory",
    )
    threads: int = Field(default=1, ge=1, le=64)
    cooldown_celsius: float = Field(
        default=45.0, ge=0, le=150, description="wait before a run while a watched zone is hotter"
    )
    thermal_zones: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="zones to watch (substrings of their type or "
        "name, e.g. 'cpu'); empty: the CPU/SoC zones "
        "(every zone on a phone without one)",
    )
    cooldown_timeout_s: float = Field(
        default=600,
        ge=0,
        le=DAY_S,
        allow_inf_nan=False,
        description="longest wait for the zones to cool down",
    )
    reject_hot: bool = Field(
        default=False,
        description="still hotter after cooldown_timeout_s: hand the "
        "task back instead of measuring (else measure and mark it)",
    )
    execution_provider: ExecutionProvider = Field(
        default="cpu",
        description="onnxruntime execution provider the runner uses "
        "(`onnxruntime_perf_test -e`): cpu, xnnpack, nnapi or qnn; a runner built without "
        "it fails the task as a device problem, saying so",
    )

    @field_validator("thermal_zones")
    @classmethod
    def _zone_names(cls, zones: list[str]) -> list[str]:
        if any(not z or len(z) > 128 for z in zones):
            raise ValueError("each zone name must be 1 to 128 characters")
        return zones

    @field_validator("prefill_lengths", "decode_contexts")
    @classmethod
    def _lengths_in_range(cls, lengths: list[int]) -> list[int]:
        if any(length < 1 or length > MAX_LENGTH for length in lengths):
            raise ValueError(f"lengths must be in [1, {MAX_LENGTH}]")
        return sorted(set(lengths))


class ArtifactRef(StrictModel):
    name: str
    sha256: str
    size_bytes: int
    url: str = Field(description="path under the API, e.g. /api/v1/artifacts/12/decode.onnx")


class TaskAssignment(StrictModel):
    task_id: int
    job_id: int
    candidate_id: int
    genome_hash: str
    attempt: int
    lease_expires_at: datetime
    spec: MeasurementSpec
    manifest: GraphManifest
    artifacts: list[ArtifactRef]


class LeaseRequest(StrictModel):
    lease_seconds: float | None = Field(
        default=None, gt=0, le=MAX_LEASE_SECONDS, allow_inf_nan=False
    )


class LeaseResponse(StrictModel):
    task: TaskAssignment | None


class LatencyStat(StrictModel):
    """Repeated timings of one graph at one length; samples in milliseconds. Every number
    is finite and non-negative, p10 <= median <= p90, and `n` counts `samples_ms`."""

    length: int = Field(
        ge=1, le=MAX_LENGTH, description="L: prefill tokens, or decode context tokens"
    )
    median_ms: float = Field(ge=0, allow_inf_nan=False)
    p10_ms: float = Field(ge=0, allow_inf_nan=False)
    p90_ms: float = Field(ge=0, allow_inf_nan=False)
    n: int = Field(ge=1, le=MAX_SAMPLES)
    samples_ms: list[float] = Field(min_length=1, max_length=MAX_SAMPLES)
    peak_memory_bytes: int | None = Field(default=None, ge=0, le=MAX_BYTES)
    reference_median_ms: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="median of a reference graph timed alternately with this one in the "
        "same processes (None: no reference was timed)",
    )
    reference_ratio: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="the median over processes of (this graph's median ÷ the reference's) "
        "in runs alternating the two: the machine's drift mostly cancels (the alternated "
        "runs are not the plain ones: each graph evicts the other from the caches)",
    )

    @field_validator("samples_ms")
    @classmethod
    def _finite_samples(cls, samples: list[float]) -> list[float]:
        bad = next((x for x in samples if not math.isfinite(x) or x < 0), None)
        if bad is not None:
            raise ValueError(f"every sample must be a finite number >= 0, got {bad}")
        return samples

    @model_validator(mode="after")
    def _consistent(self) -> "LatencyStat":
        if not self.p10_ms <= self.median_ms <= self.p90_ms:
            raise ValueError(
                f"need p10_ms <= median_ms <= p90_ms, got {self.p10_ms}, "
                f"{self.median_ms}, {self.p90_ms}"
            )
        if self.n != len(self.samples_ms):
            raise ValueError(f"n is {self.n} but samples_ms holds {len(self.samples_ms)} timings")
        if (self.reference_median_ms is None) != (self.reference_ratio is None):
            raise ValueError("reference_median_ms and reference_ratio come together, or neither")
        return self


class ThermalReading(StrictModel):
    zone: str = Field(max_length=128)
    celsius: float = Field(allow_inf_nan=False)


def _lengths_once(stats: list[LatencyStat]) -> list[LatencyStat]:
    lengths = [s.length for s in stats]
    twice = sorted({length for length in lengths if lengths.count(length) > 1})
    if twice:
        raise ValueError(f"each length once: {twice} reported more than once")
    return stats


class MeasurementReport(StrictModel):
    prefill: list[LatencyStat] = Field(max_length=MAX_LENGTHS)
    decode: list[LatencyStat] = Field(max_length=MAX_LENGTHS)
    peak_memory_bytes: int = Field(
        ge=0, le=MAX_BYTES, description="max VmHWM of the runner over the task"
    )
    runner: str = Field(
        max_length=500, description="e.g. 'onnxruntime_perf_test 1.20.0' or 'host onnxruntime'"
    )
    method: str = Field(
        default="",
        max_length=500,
        description="how the timings were taken, e.g. 'warm: 2 warm-up + 10 "
        "timed runs in each of 3 processes'",
    )
    precision: Precision = Field(
        default=DEFAULT_PRECISION,
        description="the variant measured (the task's manifest.precision)",
    )
    execution_provider: ExecutionProvider = Field(
        default="cpu", description="the provider the runner ran the graphs with"
    )
    thermal_before: list[ThermalReading] = Field(default_factory=list, max_length=256)
    thermal_after: list[ThermalReading] = Field(default_factory=list, max_length=256)
    thermal_limit_celsius: float | None = Field(default=None, ge=0, le=150, allow_inf_nan=False)
    above_thermal_limit: bool = Field(
        default=False,
        description="a watched zone was still above the limit when the measurement started",
    )
    cooldown_wait_s: float = Field(default=0, ge=0, allow_inf_nan=False)
    wall_s: float = Field(ge=0, allow_inf_nan=False)
    runner_identity: RunnerIdentity | None = Field(
        default=None, description="the runner build that took these numbers"
    )

    _each_length_once = field_validator("prefill", "decode")(_lengths_once)

    @field_validator("runner", "method")
    @classmethod
    def _plain(cls, text: str) -> str:
        return plain_text(text)


class FailureReport(StrictModel):
    """Why a task could not be measured. `kind` says whose fault it was: "candidate" (the
    graph fails: counts as one of the candidate's attempts), "device" (the phone or its
    runner is broken: the task goes back to the queue uncounted and the device is paused
    from leasing for a while), "disconnected" (the phone dropped: back to the queue,
    uncounted)."""

    reason: str = Field(min_length=1, max_length=4000)
    retryable: bool = True
    kind: Literal["candidate", "device", "disconnected"] = "candidate"

    @field_validator("reason")
    @classmethod
    def _plain_text(cls, reason: str) -> str:
        """Terminal colour codes and other control characters (a runner's coloured stderr)
        would be stored and shown raw: keep plain text, lines and tabs."""
        plain = plain_text(reason)
        if not plain:
            raise ValueError("reason must hold some text besides control characters")
        return plain


class TaskAck(StrictModel):
    task_id: int
    state: Literal["queued", "leased", "done", "failed", "cancelled"]


def error_detail(body: str) -> str:
    """The one-line reason of an API error response: its JSON `detail` (FastAPI's shape,
    a string or a list of field errors), else the body as it came."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return str(parsed.get("detail", body)) if isinstance(parsed, dict) else body
