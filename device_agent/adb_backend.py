"""The ADB backend: measures a profiling task on a phone with onnxruntime_perf_test.

Per task: push the graphs profiling runs (the manifest's `profiled` ones: prefill_last.onnx
and decode.onnx, or prefill_last.int8.onnx ...) and the one weights file they share
(weights.data, ...) to `/data/local/tmp/tailor/<genome hash>/` (each skipped when already
there, sha256 checked), and the inputs, stored once by content under `inputs/`; per
(graph file, L) a folder `prefill.int8_L128/` holding a link to the graph and
`test_data_set_0/` with valid inputs copied on the phone (see inputs.py), and a link to
the weights file (onnxruntime resolves external data beside the model's path), so variants
of one candidate share the folder without clobbering each other; wait for the watched
thermal zones to cool down (thermal.py; with spec.reject_hot a phone still hot after the
timeout fails the task as a device fault); then per (graph, L) `spec.processes` runner
processes pinned to the big cores, each `warmup + repeats` runs (perf_command.py). Reported:
median/p10/p90/n/samples and the peak working set per length, the maximum over the task,
the method, the thermal limit, whether it was still exceeded, the wait, temperatures
before and after, and the runner's identity (sha256, parser, per-run format, release line:
runner_probe.py), so the server never mixes numbers of two runner builds silently. A
runner that fails is diagnosed in its release line's words (runner_errors.py).
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.protocol import DeviceReadiness, LatencyStat, MeasurementReport, TaskAssignment

from . import perf_command, runner_errors, thermal
from .adb_device import Phone
from .defaults import DEFAULT_RUNNER, WORK_ROOT
from .failures import DeviceError, DeviceTooHot
from .inputs import graph_inputs, write_test_data
from .perf_output import PerfOutputError, parse_output, timed_samples
from .preflight import Preflight, PreflightFailed, readiness_of
from .runner_probe import RunnerProbe
from .stats import summarize, warm_method

log = logging.getLogger("tailor.agent.adb")
RUN_TIMEOUT_S = 1800.0  # the longest one (graph, L) may take, all its processes together


@dataclass
class AdbBackend:
    phone: Phone
    runner: str = DEFAULT_RUNNER
    cores: list[int] | None = None  # None: the big cores, from cpufreq
    cooling: thermal.CoolingPolicy = field(default_factory=thermal.CoolingPolicy)
    run_timeout_s: float = RUN_TIMEOUT_S
    cooldown_poll_s: float = thermal.POLL_S
    _cpus: tuple[list[int], set[int] | None] | None = None
    probe: RunnerProbe | None = None  # the runner build, from the last check

    def thermal(self) -> list:
        return thermal.parse_zones(self.phone.shell(thermal.READ_ZONES))

    def watched_zones(self) -> list[str]:
        """The zone types this phone has that the cooling policy watches by default (the
        job may name others): what the agent reports at enrolment."""
        return self.cooling.zones_on(self.thermal())

    def pinned_cores(self) -> list[int]:
        if self.cores is not None:
            return self.cores
        if self._cpus is None:
            from .properties import PHONE_CPUFREQ, PHONE_ONLINE, parse_cpu_freqs, parse_cpu_list

            self._cpus = (
                parse_cpu_freqs(self.phone.shell(PHONE_CPUFREQ)),
                parse_cpu_list(self.phone.shell(PHONE_ONLINE)),
            )
        return perf_command.big_cores(*self._cpus)

    def preflight(self) -> Preflight:
        return Preflight(self.phone, self.runner, WORK_ROOT)

    def check_runner(self) -> RunnerProbe:
        check = self.preflight()
        problems = check.runner_problems(abi="the phone's ABI")
        if problems:
            raise DeviceError(str(problems[0]))
        self.probe = check.probe
        return check.probe

    def stage(self, graph_dir: Path, task: TaskAssignment) -> list[tuple[str, int, str]]:
        """Push the graphs and inputs, lay out one folder per (graph, L); (kind, L, folder
        name) per case."""
        spec, manifest = task.spec, task.manifest
        remote = f"{WORK_ROOT}/{task.genome_hash}"
        for name in manifest.files:
            if PurePosixPath(name).name != name or name.startswith("."):
                raise ValueError(f"graph file name {name!r} is not a plain file name")
        # what profiling runs, and the one weights file its graphs share (pushed once)
        weights = manifest.weights.file if manifest.weights is not None else None
        files = {graph_dir / f: f"{remote}/{f}" for f in manifest.phone_files}
        setup, cases = [], []
        with tempfile.TemporaryDirectory(prefix="tailor-inputs-") as tmp:
            for kind, lengths in (
                ("prefill", spec.prefill_lengths),
                ("decode", spec.decode_contexts),
            ):
                graph_file = manifest.profiled(kind).file
                stem = graph_file[: -len(".onnx")] if graph_file.endswith(".onnx") else graph_file
                for length in lengths:
                    case = f"{stem}_L{length}"
                    data = shlex.quote(f"{remote}/{case}/test_data_set_0")
                    copies = [f"rm -rf {data}", f"mkdir -p {data}"]
                    for pb in write_test_data(
                        Path(tmp) / case, graph_inputs(manifest, kind, length)
                    ):
                        digest = hashlib.sha256(pb.read_bytes()).hexdigest()[:24]
                        stored = f"{remote}/inputs/{digest}.pb"
                        files[pb] = stored  # same content: pushed once, whatever the variant
                        copies.append(f"cp {shlex.quote(stored)} {data}/{pb.name}")
                    copies.append(
                        f"ln -sf ../{shlex.quote(graph_file)} "
                        f"{shlex.quote(f'{remote}/{case}/model.onnx')}"
                    )
                    if weights:  # onnxruntime reads external data beside the model's path
                        copies.append(
                            f"ln -sf ../{shlex.quote(weights)} "
                            f"{shlex.quote(f'{remote}/{case}/{weights}')}"
                        )
                    setup.append(" && ".join(copies))
                    cases.append((kind, length, f"{remote}/{case}"))
            self.phone.push_verified(files)
        self.phone.checked(" && ".join(setup))
        return cases

    def cool_down(self, spec) -> tuple[thermal.Cooldown, float]:
        limit, zones, timeout = self.cooling.resolve(spec)
        cooled = thermal.wait_for_cooldown(
            self.thermal, limit, zones, max_wait_s=timeout, poll_s=self.cooldown_poll_s
        )
        if cooled.still_hot and spec.reject_hot:
            raise DeviceTooHot(
                f"too hot to measure: "
                f"{thermal.describe(cooled.hot_zone(zones), limit)}"
                f" after waiting {cooled.waited_s:.0f} s"
            )
        return cooled, limit

    def measure(self, graph_dir: Path, task: TaskAssignment) -> MeasurementReport:
        started = time.perf_counter()
        probe = self.check_runner()
        spec, provider = task.spec, task.spec.execution_provider
        cases = self.stage(graph_dir, task)
        cores = self.pinned_cores()
        cooled, limit = self.cool_down(spec)
        stats: dict[str, list[LatencyStat]] = {"prefill": [], "decode": []}
        peak, formats = 0, set()
        for kind, length, folder in cases:
            samples, case_peak, per_run = self._run_case(folder, spec, cores, provider)
            formats.add(per_run)
            peak = max(peak, case_peak or 0)
            stats[kind].append(
                LatencyStat(
                    length=length,
                    samples_ms=samples,
                    peak_memory_bytes=case_peak,
                    **summarize(samples),
                )
            )
        if len(formats) > 1:
            raise DeviceError(
                f"{self.runner} printed per-run lines in two formats "
                f"({sorted(formats)}) within one task: was it replaced?"
            )
        identity = probe.identity(formats.pop() if formats else None)
        return MeasurementReport(
            prefill=stats["prefill"],
            decode=stats["decode"],
            peak_memory_bytes=peak,
            runner=f"onnxruntime_perf_test {identity.release_line} ({self.runner}, "
            f"-e {provider}, cpus {cores}, -x {spec.threads})",
            method=warm_method(spec.warmup, spec.repeats, spec.processes, "", provider),
            precision=task.manifest.precision,
            execution_provider=provider,
            thermal_before=cooled.readings,
            thermal_after=self.thermal(),
            thermal_limit_celsius=limit,
            above_thermal_limit=cooled.still_hot,
            cooldown_wait_s=cooled.waited_s,
            wall_s=time.perf_counter() - started,
            runner_identity=identity,
        )

    def _run_case(
        self, folder: str, spec, cores: list[int], provider: str = "cpu"
    ) -> tuple[list[float], int | None, str | None]:
        """(samples over all processes, peak over them, the per-run format printed)."""
        runs = spec.warmup + spec.repeats
        command = perf_command.loop_command(
            self.runner, folder, "model.onnx", spec.processes, runs, spec.threads, cores, provider
        )
        outputs = perf_command.split_runs(self.phone.shell(command, timeout_s=self.run_timeout_s))
        if len(outputs) != spec.processes:
            raise PerfOutputError(
                f"{folder}: expected {spec.processes} runner processes, got {len(outputs)}"
            )
        args = " ".join(
            perf_command.runner_args("model.onnx", spec.threads, runs, provider=provider)
        )
        samples, peak, per_run = [], None, None
        for rc, text in outputs:
            error = runner_errors.diagnose(
                rc, text, self.runner, provider, self.probe, args, folder
            )
            if error is not None:
                raise error
            try:
                result = parse_output(text)
                samples += timed_samples(result, spec.warmup, spec.repeats)
            except PerfOutputError as exc:  # the runner's output, not the graph, is wrong
                raise DeviceError(f"{folder}: {exc}") from exc
            if result.peak_memory_bytes is not None:
                peak = max(peak or 0, result.peak_memory_bytes)
            per_run = result.per_run_format
        return samples, peak, per_run


class Reconnector:
    """`ready()` for the agent loop: True while the phone is connected and has passed its
    preflight. Otherwise one reconnection (or preflight) attempt at a time, with back-off
    (1 s doubling to `max_backoff_s`) between attempts. `device_failed()` (a device fault
    during a task) makes the next call re-run the preflight. `readiness` is the verdict the
    agent's heartbeats carry to the server (why not ready, and the fix)."""

    def __init__(
        self, phone: Phone, max_backoff_s: float = 30.0, preflight: Preflight | None = None
    ):
        self.phone, self.max_backoff_s, self.check = phone, max_backoff_s, preflight
        self.backoff_s, self.next_try = 1.0, 0.0
        self.fit = preflight is None
        self.lost = False
        self.readiness: DeviceReadiness | None = None

    def device_failed(self) -> None:
        self.fit = self.check is None

    def _later(self, what: str, readiness: DeviceReadiness) -> bool:
        log.warning("%s; next try in %.0f s", what, self.backoff_s)
        self.readiness = readiness
        self.next_try = time.monotonic() + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, self.max_backoff_s)
        return False

    def _reconnect(self) -> bool:
        if not self.lost:
            log.warning(
                "phone %s disconnected: leasing nothing until it is back", self.phone.address
            )
            self.lost = True
        try:
            self.phone.connect()
        except Exception as exc:  # noqa: BLE001 — any failure means "not back yet"
            return self._later(
                f"phone not reachable ({exc})",
                DeviceReadiness(
                    ready=False,
                    reason=f"phone {self.phone.address} not reachable over ADB ({str(exc)[:300]})",
                    fix="plug the phone in (or `adb connect` it again) and allow USB debugging",
                ),
            )
        log.info("phone %s is back", self.phone.address)
        self.lost = False
        self.fit = self.check is None
        return True

    def _preflight(self) -> bool:
        try:
            self.readiness = self.check.check()
        except PreflightFailed as exc:
            return self._later(
                f"phone not ready to measure: {exc}", readiness_of(exc.problems, None)
            )
        except Exception as exc:  # noqa: BLE001 — a drop meanwhile
            return self._later(
                f"phone not ready to measure: {exc}",
                DeviceReadiness(
                    ready=False,
                    reason=f"preflight could not run: {str(exc)[:500]}",
                    fix="check the phone's connection",
                ),
            )
        runner = self.readiness.runner
        log.info(
            "preflight passed: %s runs (onnxruntime_perf_test %s, %s parser, sha256 "
            "%s), storage ok",
            self.check.runner,
            runner.release_line,
            runner.parser,
            (runner.sha256 or "unknown")[:12],
        )
        self.fit = True
        return True

    def __call__(self) -> bool:
        if self.phone.connected and self.fit:
            return True
        if time.monotonic() < self.next_try:
            return False
        if not self.phone.connected and not self._reconnect():
            return False
        if not self.fit and not self._preflight():
            return False
        self.backoff_s, self.next_try = 1.0, 0.0
        if self.check is None:
            self.readiness = DeviceReadiness(ready=True)
        return True
