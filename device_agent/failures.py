"""Whose fault a failed task was, as the server's FailureReport.kind says.

"candidate": the graph itself fails (counts as one of the candidate's attempts);
"device": the phone or its runner is broken (runner missing, storage full, too hot), so the
task goes back uncounted and this agent pauses leasing until its preflight passes again;
"disconnected": the phone dropped off ADB (back to the queue uncounted; reconnect).
"""

from __future__ import annotations

from core.protocol import FailureReport


class DeviceError(RuntimeError):
    """The device, not the candidate, is at fault; the message says how to fix it."""


class DeviceTooHot(DeviceError):
    """Still above the cool-down limit after the cool-down timeout (spec.reject_hot)."""


class ProviderMissing(DeviceError):
    """The runner (or the host's onnxruntime) lacks the execution provider the task asks
    for; the message names it and how to get a runner that has it."""


class PhoneDisconnected(RuntimeError):
    """The phone went away (or never answered); the message says how."""


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, PhoneDisconnected):
        return "disconnected"
    if isinstance(exc, DeviceError):
        return "device"
    return "candidate"


def failure_report(exc: BaseException) -> FailureReport:
    """The report for a failed task: plain text (FailureReport strips terminal colours),
    at most the field's length, the tail kept (that is where runners say what broke)."""
    reason = f"{type(exc).__name__}: {exc}"
    limit = FailureReport.model_fields["reason"].metadata[-1].max_length
    if len(reason) > limit:
        reason = reason[:200] + " … " + reason[-(limit - 210) :]
    return FailureReport(reason=reason, retryable=True, kind=failure_kind(exc))
