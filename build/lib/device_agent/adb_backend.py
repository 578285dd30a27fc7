"""The ADB backend: measures a profiling task on a phone with onnxruntime_perf_test.

Per task: push prefill.onnx and decode.onnx to `/data/local/tmp/tailor/<genome hash>/`
(skipped when already there, sha256 checked); per (graph, L) a folder holding a link to the
graph and `test_data_set_0/` with valid inputs (see inputs.py); wait for cool-down; run the
runner pinned to the big cores `warmup + repeats` times (one process per sample, see
perf_test.py), dropping the first `warmup`; report median/p10/p90/n/samples and the peak
working set per length, the maximum over the task, and temperatures before and after.
"""

from __future__ import annotations

import logging
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import perf_test, thermal
from .adb_device import Phone
from .inputs import graph_inputs, write_test_data
from core.protocol import LatencyStat, MeasurementReport, TaskAssignment
from .stats import summarize

log = logging.getLogger("tailor.agent.adb")
WORK_ROOT = "/data/local/tmp/tailor"
DEFAULT_RUNNER = "/data/local/tmp/onnxruntime_perf_test"


@dataclass
class AdbBackend:
    phone: Phone
    runner: str = DEFAULT_RUNNER
    cores: list[int] | None = None          # None: the big cores, from cpufreq
    max_cooldown_wait_s: float = 300.0
    run_timeout_s: float = 600.0
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

    def check_runner(self) -> str:
        out = self.phone.shell(f"ls -l {shlex.quote(self.runner)} 2>&1")
        if "No such file" in out or not out.strip():
            raise FileNotFoundError(f"{self.runner} is not on the phone; build and push it "
                                    "(device_agent/README.md)")
        return out

    def measure(self, graph_dir: Path, task: TaskAssignment) -> MeasurementReport:
        started = time.perf_counter()
        self.check_runner()
        spec, manifest = task.spec, task.manifest
        remote = f"{WORK_ROOT}/{task.genome_hash}"
        files = {graph_dir / g.file: f"{remote}/{g.file}" for g in manifest.graphs.values()}
        with tempfile.TemporaryDirectory(prefix="tailor-inputs-") as tmp:
            cases = []
            for kind, lengths in (("prefill", spec.prefill_lengths),
                                  ("decode", spec.decode_contexts)):
                for length in lengths:
                    case = f"{kind}_L{length}"
                    for pb in write_test_data(Path(tmp) / case,
                                              graph_inputs(manifest, kind, length)):
                        files[pb] = f"{remote}/{case}/test_data_set_0/{pb.name}"
                    cases.append((kind, length, case))
            self.phone.push_verified(files)
        links = " && ".join(
            f"ln -sf ../{shlex.quote(manifest.graphs[kind].file)} {remote}/{case}/model.onnx"
            for kind, _, case in cases)
        self.phone.checked(links)
        cores = self.pinned_cores()
        before = thermal.wait_for_cooldown(self.thermal, spec.cooldown_celsius,
                                           max_wait_s=self.max_cooldown_wait_s)
        stats: dict[str, list[LatencyStat]] = {"prefill": [], "decode": []}
        peak = 0
        for kind, length, case in cases:
            samples, case_peak = self._run_case(f"{remote}/{case}", spec, cores)
            peak = max(peak, case_peak or 0)
            stats[kind].append(LatencyStat(length=length, samples_ms=samples,
                                           peak_memory_bytes=case_peak, **summarize(samples)))
        after = self.thermal()
        return MeasurementReport(
            prefill=stats["prefill"], decode=stats["decode"], peak_memory_bytes=peak,
            runner=f"onnxruntime_perf_test ({self.runner}, cpus {cores}, -x {spec.threads})",
            thermal_before=before, thermal_after=after, wall_s=time.perf_counter() - started)

    def _run_case(self, folder: str, spec, cores: list[int]) -> tuple[list[float], int | None]:
        command = perf_test.loop_command(self.runner, folder, "model.onnx",
                                         spec.warmup + spec.repeats, spec.threads, cores)
        runs = perf_test.split_runs(self.phone.shell(command, timeout_s=self.run_timeout_s))
        if len(runs) != spec.warmup + spec.repeats:
            raise perf_test.PerfOutputError(f"{folder}: expected {spec.warmup + spec.repeats} "
                                            f"runs, got {len(runs)}")
        samples, peak = [], None
        for index, (rc, text) in enumerate(runs):
            if rc != 0:
                raise perf_test.PerfOutputError(f"{folder}: runner exited {rc}: "
                                                f"{text.strip()[-1500:]}")
            result = perf_test.parse_output(text)
            if result.peak_memory_bytes is not None:
                peak = max(peak or 0, result.peak_memory_bytes)
            if index >= spec.warmup:
                samples.append(result.average_ms)
        return samples, peak


class Reconnector:
    """`ready()` for the agent loop: True while the phone is connected; otherwise one
    reconnection attempt at a time, with backoff (1 s doubling to 30 s) between attempts."""

    def __init__(self, phone: Phone, max_backoff_s: float = 30.0):
        self.phone, self.max_backoff_s = phone, max_backoff_s
        self.backoff_s, self.next_try = 1.0, 0.0

    def __call__(self) -> bool:
        if self.phone.connected:
            return True
        now = time.monotonic()
        if now < self.next_try:
            return False
        try:
            self.phone.connect()
        except Exception as exc:  # noqa: BLE001 — any failure means "not back yet"
            log.warning("phone not reachable (%s); next try in %.0fs", exc, self.backoff_s)
            self.next_try = now + self.backoff_s
            self.backoff_s = min(self.backoff_s * 2, self.max_backoff_s)
            return False
        self.backoff_s, self.next_try = 1.0, 0.0
        log.info("phone %s is back", self.phone.address)
        return True
