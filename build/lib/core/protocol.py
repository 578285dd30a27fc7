"""Wire schemas shared by the API and the device agents, and the API's URL prefix.

This module is the whole contract between `api/` and `device_agent/`: the agent runs on a
laptop beside a phone, so it imports only pydantic (no torch, no Ray, nothing from the
server). The API imports these same classes so the two ends can never drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from .manifest import GraphManifest, WireModel

API_PREFIX = "/api/v1"  # every route of the REST API lives under it


def artifact_url(candidate_id: int, name: str) -> str:
    """Where the API serves one of a candidate's artifacts (ONNX graphs, weights)."""
    return f"{API_PREFIX}/artifacts/{candidate_id}/{name}"


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


class MeasurementSpec(WireModel):
    """How one candidate is measured on one device: the part of a job's `profiling` block
    that travels with each profiling task (core.job_spec.ProfilingSpec adds the rest)."""

    prefill_lengths: list[int] = Field(default_factory=lambda: [128, 512], min_length=1,
                                       max_length=32)
    decode_contexts: list[int] = Field(default_factory=lambda: [128, 512], min_length=1,
                                       max_length=32)
    warmup: int = Field(default=2, ge=0, le=100)
    repeats: int = Field(default=10, ge=1, le=1000)
    threads: int = Field(default=1, ge=1, le=64)
    cooldown_celsius: float = Field(default=45.0, description="wait before a run while hotter")

    @field_validator("prefill_lengths", "decode_contexts")
    @classmethod
    def _lengths_in_range(cls, lengths: list[int]) -> list[int]:
        if any(length < 1 or length > 1 << 20 for length in lengths):
            raise ValueError("lengths must be in [1, 1048576]")
        return sorted(set(lengths))


class ArtifactRef(WireModel):
    name: str
    sha256: str
    size_bytes: int
    url: str = Field(description="path under the API, e.g. /api/v1/artifacts/12/decode.onnx")


class TaskAssignment(WireModel):
    task_id: int
    job_id: int
    candidate_id: int
    genome_hash: str
    attempt: int
    lease_expires_at: datetime
    spec: MeasurementSpec
    manifest: GraphManifest
    artifacts: list[ArtifactRef]


class LeaseRequest(WireModel):
    lease_seconds: float | None = Field(default=None, gt=0, le=86_400)


class LeaseResponse(WireModel):
    task: TaskAssignment | None


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
