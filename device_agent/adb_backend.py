"""The ADB backend: measures a profiling task on a phone with onnxruntime_perf_test.

Per task: push the variant's graphs (the manifest's file names: prefill.onnx, or
prefill.int8.onnx ...) to `/data/local/tmp/tailor/<genome hash>/` (skipped when already
there, sha256 checked), and the inputs, stored once by content under `inputs/`; per
(graph file, L) a folder `prefill.int8_L128/` holding a link to the graph and
`test_data_set_0/` with valid inputs copied on the phone (see inputs.py), so variants of
one candidate share the folder without clobbering each other; wait for the watched
thermal zones to cool down (thermal.py; with spec.reject_hot a phone still hot after the
timeout fails the task as a device fault); then per (graph, L) `spec.processes` runner
processes pinned to the big cores, each `warmup + repeats` runs (perf_test.py). Reported:
median/p10/p90/n/samples and the peak working set per length, the maximum over the task,
the method, the thermal limit, whether it was still exceeded, the wait, and temperatures
before and after.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import perf_test, thermal
from .adb_device import Phone
from .defaults import DEFAULT_RUNNER, WORK_ROOT
from .failures import DeviceError, DeviceTooHot, ProviderMissing
from .inputs import graph_inputs, write_test_data
from .preflight import RUNNER_NOT_RUNNABLE, Preflight
from .stats import summarize, warm_method
from core.protocol import LatencyStat, MeasurementReport, TaskAssignment

log = logging.getLogger("tailor.agent.adb")
RUN_TIMEOUT_S = 1800.0   # the longest one (graph, L) may take, all its processes together


@dataclass
class AdbBackend:
    phone: Phone
    runner: str = DEFAULT_RUNNER
    cores: list[int] | None = None          # None: the big cores, from cpufreq
    cooling: thermal.CoolingPolicy = field(default_factory=thermal.CoolingPolicy)
    run_timeout_s: float = RUN_TIMEOUT_S
    cooldown_poll_s: float = thermal.POLL_S
    _freqs: list[int] | None = None

    def thermal(self) -> list:
        return thermal.parse_zones(self.phone.shell(thermal.READ_ZONES))

    def pinned_cores(self) -> list[int]:
        if self.cores is not None:
            return self.cores
        if self._freqs is None:
            from .properties import PHONE_CPUFREQ, parse_cpu_freqs
            self._freqs = parse_cpu_freqs(self.phone.shell(PHONE_CPUFREQ))
        return perf_test.big_cores(self._freqs)

    def preflight(self) -> Preflight:
        return Preflight(self.phone, self.runner, WORK_ROOT)

    def check_runner(self) -> None:
        problems = self.preflight().runner_problems(abi="the phone's ABI")
        if problems:
            raise DeviceError(problems[0])

    def measure(self, graph_dir: Path, task: TaskAssignment) -> MeasurementReport:
        started = time.perf_counter()
        self.check_runner()
        spec, manifest = task.spec, task.manifest
        provider = spec.execution_provider
        remote = f"{WORK_ROOT}/{task.genome_hash}"
        for graph in manifest.graphs.values():
            if PurePosixPath(graph.file).name != graph.file or graph.file.startswith("."):
                raise ValueError(f"graph file name {graph.file!r} is not a plain file name")
        files = {graph_dir / g.file: f"{remote}/{g.file}" for g in manifest.graphs.values()}
        setup = []
        with tempfile.TemporaryDirectory(prefix="tailor-inputs-") as tmp:
            cases = []
            for kind, lengths in (("prefill", spec.prefill_lengths),
                                  ("decode", spec.decode_contexts)):
                graph_file = manifest.graphs[kind].file
                stem = graph_file[:-len(".onnx")] if graph_file.endswith(".onnx") else graph_file
                for length in lengths:
                    case = f"{stem}_L{length}"
                    data = shlex.quote(f"{remote}/{case}/test_data_set_0")
                    copies = [f"rm -rf {data}", f"mkdir -p {data}"]
                    for pb in write_test_data(Path(tmp) / case,
                                              graph_inputs(manifest, kind, length)):
                        digest = hashlib.sha256(pb.read_bytes()).hexdigest()[:24]
                        stored = f"{remote}/inputs/{digest}.pb"
                        files[pb] = stored   # same content: pushed once, whatever the variant
                        copies.append(f"cp {shlex.quote(stored)} {data}/{pb.name}")
                    copies.append(f"ln -sf ../{shlex.quote(graph_file)} "
                                  f"{shlex.quote(f'{remote}/{case}/model.onnx')}")
                    setup.append(" && ".join(copies))
                    cases.append((kind, length, case))
            self.phone.push_verified(files)
        self.phone.checked(" && ".join(setup))
        cores = self.pinned_cores()
        limit, zones, timeout = self.cooling.resolve(spec)
        cooled = thermal.wait_for_cooldown(self.thermal, limit, zones, max_wait_s=timeout,
                                           poll_s=self.cooldown_poll_s)
        if cooled.still_hot and spec.reject_hot:
            raise DeviceTooHot(f"too hot to measure: {thermal.describe(cooled.hot_zone(zones), limit)}"
                               f" after waiting {cooled.waited_s:.0f} s")
        stats: dict[str, list[LatencyStat]] = {"prefill": [], "decode": []}
        peak, summary_only = 0, False
        for kind, length, case in cases:
            samples, case_peak, per_run = self._run_case(f"{remote}/{case}", spec, cores,
                                                         provider)
            summary_only |= not per_run
            peak = max(peak, case_peak or 0)
            stats[kind].append(LatencyStat(length=length, samples_ms=samples,
                                           peak_memory_bytes=case_peak, **summarize(samples)))
        after = self.thermal()
        note = "the runner printed no per-run times: one sample per process" \
            if summary_only else ""
        return MeasurementReport(
            prefill=stats["prefill"], decode=stats["decode"], peak_memory_bytes=peak,
            runner=f"onnxruntime_perf_test ({self.runner}, -e {provider}, cpus {cores}, "
                   f"-x {spec.threads})",
            method=warm_method(spec.warmup, spec.repeats, spec.processes, note, provider),
            precision=manifest.precision, execution_provider=provider,
            thermal_before=cooled.readings, thermal_after=after, thermal_limit_celsius=limit,
            above_thermal_limit=cooled.still_hot, cooldown_wait_s=cooled.waited_s,
            wall_s=time.perf_counter() - started)

    def _run_case(self, folder: str, spec, cores: list[int], provider: str = "cpu"
                  ) -> tuple[list[float], int | None, bool]:
        """(samples over all processes, peak over them, whether per-run times were read)."""
        runs = spec.warmup + spec.repeats
        command = perf_test.loop_command(self.runner, folder, "model.onnx", spec.processes,
                                         runs, spec.threads, cores, provider)
        outputs = perf_test.split_runs(self.phone.shell(command, timeout_s=self.run_timeout_s))
        if len(outputs) != spec.processes:
            raise perf_test.PerfOutputError(f"{folder}: expected {spec.processes} runner "
                                            f"processes, got {len(outputs)}")
        samples, peak, per_run = [], None, True
        for rc, text in outputs:
            if rc in RUNNER_NOT_RUNNABLE:
                raise DeviceError(f"{self.runner} could not start on the phone (exit {rc}): "
                                  f"{text.strip()[-500:]}")
            said = perf_test.provider_missing(text, provider) if rc != 0 else None
            if said:
                raise ProviderMissing(perf_test.provider_missing_message(self.runner, provider,
                                                                         said))
            if rc != 0:
                raise perf_test.PerfOutputError(f"{folder}: runner exited {rc}: "
                                                f"{text.strip()[-1500:]}")
            result = perf_test.parse_output(text)
            if result.peak_memory_bytes is not None:
                peak = max(peak or 0, result.peak_memory_bytes)
            per_run &= bool(result.runs_ms)
            samples += perf_test.timed_samples(result, spec.warmup, spec.repeats)
        return samples, peak, per_run


class Reconnector:
    """`ready()` for the agent loop: True while the phone is connected and has passed its
    preflight. Otherwise one reconnection (or preflight) attempt at a time, with back-off
    (1 s doubling to `max_backoff_s`) between attempts. `device_failed()` (a device fault
    during a task) makes the next call re-run the preflight."""

    def __init__(self, phone: Phone, max_backoff_s: float = 30.0,
                 preflight: Preflight | None = None):
        self.phone, self.max_backoff_s, self.check = phone, max_backoff_s, preflight
        self.backoff_s, self.next_try = 1.0, 0.0
        self.fit = preflight is None
        self.lost = False

    def device_failed(self) -> None:
        self.fit = self.check is None

    def _later(self, what: str) -> bool:
        log.warning("%s; next try in %.0f s", what, self.backoff_s)
        self.next_try = time.monotonic() + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, self.max_backoff_s)
        return False

    def __call__(self) -> bool:
        if self.phone.connected and self.fit:
            return True
        if time.monotonic() < self.next_try:
            return False
        if not self.phone.connected:
            if not self.lost:
                log.warning("phone %s disconnected: leasing nothing until it is back",
                            self.phone.address)
                self.lost = True
            try:
                self.phone.connect()
            except Exception as exc:  # noqa: BLE001 — any failure means "not back yet"
                return self._later(f"phone not reachable ({exc})")
            log.info("phone %s is back", self.phone.address)
            self.lost = False
            self.fit = self.check is None
        if not self.fit:
            try:
                self.check.check()
            except Exception as exc:  # noqa: BLE001 — PreflightFailed or a drop meanwhile
                return self._later(f"phone not ready to measure: {exc}")
            log.info("preflight passed: %s runs, storage ok", self.check.runner)
            self.fit = True
        self.backoff_s, self.next_try = 1.0, 0.0
        return True
