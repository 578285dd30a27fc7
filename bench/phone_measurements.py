"""Phone-scale genomes measured on this host's "device classes", once for every benchmark.

`bench.latency_model` (the latency model's accuracy and transfer) and `bench.search --sets
phone` (the phone-scale search) measure the same kind of thing: a genome exported at full
size, at the precision phones run, its prefill and decode latency and peak memory taken by
the host agent's own backend (`device_agent.host_backend.measure_task`: warm runs, each case
in fresh processes). A device here is named `class-precision[-Nt]`, e.g. `host-int8` or
`host-int4-2t` (`device`). Every measurement is kept in a cache, keyed by genome hash and
device, so a genome measured by one benchmark (or one algorithm, or seed) is never exported
or measured again by another that takes the same protocol (one cache file per protocol:
e.g. a reference timed beside each case, `Protocol.reference`, makes another).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import Genome
from core.manifest import GRAPH_REVISION, UNRECORDED_GRAPH_REVISION
from core.metrics import Metric, measured_metrics
from core.precision import PRECISIONS, Variant
from core.protocol import MeasurementSpec

RESULTS = Path(__file__).parent / "results"
# This graph revision's cache, a file per revision (`phone_measurements.json` holds older
# graphs', the phone set's search and the latency model's first two runs, kept as measured).
CACHE = RESULTS / f"phone_measurements_graphs{GRAPH_REVISION}.json"


def device(name: str) -> tuple[str, str, int]:
    """`host-int8` -> (class "host", int8, 1 thread); `host-2t` -> ("host-2t", float32, 2):
    the class names what changes the hardware, the precision stays the metric's own."""
    parts = name.split("-")
    precision, threads = "float32", 1
    for part in parts[1:]:
        if part in PRECISIONS:
            precision = part
        elif part.endswith("t") and part[:-1].isdigit():
            threads = int(part[:-1])
        else:
            raise ValueError(
                f"device {name!r}: parts after the class are a precision "
                f"({', '.join(PRECISIONS)}) or a thread count like 2t"
            )
    device_class = parts[0] + (f"-{threads}t" if threads != 1 else "")
    return device_class, precision, threads


def metric_suffix(name: str) -> str:
    """`host-int8` -> `[host:int8]`: how the metric grammar (core.metrics.Metric) names the
    device's readings."""
    return str(_metric(name, "peak_mem_mb", None)).removeprefix("peak_mem_mb")


def _metric(name: str, metric: str, length: int | None) -> Metric:
    device_class, precision, _ = device(name)
    return Metric(metric, length, device_class, precision)


@dataclass(frozen=True)
class Protocol:
    """What one measurement runs: one prefill length, one decode context, warm repeats in
    each of `processes` fresh runner processes (the metric is the median of all their runs).

    Three processes, not one: re-measuring six phone-scale genomes three times each on this
    machine (int8, one process of 10 runs each time) gave decode medians of 2.52 / 2.90 /
    4.41 ms and 1.86 / 2.08 / 2.85 ms for the same graph: a whole process runs slow, so the
    runs of one process cannot tell a slow genome from a slow process (bench/README, Latency
    model). A file written before this field existed was taken with one process."""

    prefill: int = 128
    decode: int = 128
    warmup: int = 2
    repeats: int = 10
    processes: int = 3
    # A preset (core.presets) timed alternately with every case, e.g. REFERENCE; "" for none.
    # Its ratio mostly cancels what drifts between measurements (bench/README, Latency model).
    reference: str = ""
    # Pairs per process of a decode case with the reference (prefill: `repeats`). 10 is what
    # the third latency-model run took (its cache file says nothing of it); bench.latency_model
    # asks for 60: a probe (bench/README, Latency model) found the referenced decode of four
    # genomes moving 1.03-1.10x over repeated measurements with 10 pairs, 1.01-1.03x with 60.
    decode_pairs: int = 10
    # The exporter's graph revision (core.manifest.GRAPH_REVISION) the graphs were timed at:
    # files from before this field are read as core.manifest.UNRECORDED_GRAPH_REVISION.
    graphs: int = GRAPH_REVISION

    def spec(self, threads: int) -> MeasurementSpec:
        return MeasurementSpec(
            prefill_lengths=[self.prefill],
            decode_contexts=[self.decode],
            warmup=self.warmup,
            repeats=self.repeats,
            processes=self.processes,
            threads=threads,
        )

    @classmethod
    def saved(cls, fields: dict[str, Any]) -> "Protocol":
        """The protocol a cache file records (files from before `processes`: one process;
        from before `reference`: none; from before `graphs`: UNRECORDED_GRAPH_REVISION)."""
        return cls(**{"processes": 1, "graphs": UNRECORDED_GRAPH_REVISION, **fields})

    def reference_genome(self) -> Genome | None:
        """The reference preset: `NAME key=value ...` (core.presets.preset's overrides)."""
        if not self.reference:
            return None
        from core.presets import preset

        name, *overrides = self.reference.split()
        sizes = {}
        for override in overrides:
            key, _, value = override.partition("=")
            if not value.isdigit():
                raise ValueError(f"{override!r} is not key=integer")
            sizes[key] = int(value)
        return preset(name, **sizes)

    def metric_names(self, name: str) -> list[str]:
        """What `measured_metrics` calls this protocol's readings on device `name`."""
        cases = (("prefill_ms", self.prefill), ("decode_ms", self.decode), ("peak_mem_mb", None))
        return [str(_metric(name, metric, length)) for metric, length in cases]


# The reference of the third and fourth latency-model runs: a hyena-edge hybrid (GQA every
# third layer) of 35M parameters, amid the phone-scale space's 10-150M.
REFERENCE = "hyena-edge width=512 layers=8 heads=8 kv_heads=2 ffn=1536 vocab=16384"


def task_folder(export_dir: Path, variant: Variant) -> Path:
    """A folder laid out as an agent's task folder: every exported file linked (graphs and
    the external weight files they reference), the variant's manifest as manifest.json
    (made once; a second call returns it)."""
    folder = export_dir / f"run-{variant.tag or 'float32'}"
    if folder.exists():
        return folder
    folder.mkdir()
    for path in export_dir.iterdir():
        if path.is_file() and not path.name.startswith("manifest"):
            (folder / path.name).symlink_to(path)
    (folder / "manifest.json").write_text((export_dir / variant.file("manifest")).read_text())
    return folder


def _variants(devices: list[str]) -> dict[str, Variant]:
    return {p: Variant(p) for _, p, _ in map(device, devices)}


def export_genome(genome_json: dict[str, Any], folder: str, devices: list[str]) -> float:
    """Export once, every precision the devices need, into `folder`; the CPU-seconds it
    took. Runs in an export process (one torch thread: the exports share the cores)."""
    from workers.export.variants import export_variants

    cpu = time.process_time()
    export_variants(genome_json, folder, list(_variants(devices).values()))
    return time.process_time() - cpu


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def measure_exported(
    folder: Path,
    devices: list[str],
    protocol: Protocol,
    export_s: float,
    reference: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure an export on each device in turn (nothing else running). Per device: the
    metrics as `measured_metrics` names them, each case's sample CV, and what it cost
    (`export_s`: CPU-seconds of the export, shared by the devices measured with it,
    recorded on each; `measure_s`: the measurement's wall time). With `reference` (the
    reference preset's export): per latency metric its `relative` value (the genome's
    median over the reference's, runs alternating) and the reference's median
    (`reference_ms`)."""
    from device_agent.host_backend import measure_task

    variants = _variants(devices)
    out: dict[str, dict[str, Any]] = {}
    for name in devices:
        device_class, precision, threads = device(name)
        graphs = task_folder(folder, variants[precision])
        paired = task_folder(reference, variants[precision]) if reference else None
        started = time.perf_counter()
        report = measure_task(
            graphs,
            protocol.spec(threads),
            precision,
            reference=paired,
            pairs={"decode": protocol.decode_pairs},
        )
        cvs = {
            f"{kind}@{stat.length}": statistics.pstdev(stat.samples_ms)
            / max(statistics.fmean(stat.samples_ms), 1e-9)
            for kind, stats in (("prefill", report.prefill), ("decode", report.decode))
            for stat in stats
        }
        out[name] = {
            "metrics": measured_metrics(report, device_class, precision),
            "cv": cvs,
            "export_s": export_s,
            "measure_s": time.perf_counter() - started,
        }
        if paired is not None:
            out[name] |= relative_readings(report, name)
    return out


def relative_readings(report, name: str) -> dict[str, dict[str, float]]:
    """Per latency metric of the report: the genome's latency over the reference's, and the
    reference's own median."""
    out: dict[str, dict[str, float]] = {"relative": {}, "reference_ms": {}}
    for kind, stats in (("prefill", report.prefill), ("decode", report.decode)):
        for stat in stats:
            metric = str(_metric(name, f"{kind}_ms", stat.length))
            out["relative"][metric] = stat.reference_ratio
            out["reference_ms"][metric] = stat.reference_median_ms
    return out


def _error(error: BaseException) -> dict[str, str]:
    """A genome that cannot be exported or measured: its failure, as a search records one."""
    return {"error": f"{type(error).__name__}: {str(error)[:300]}"}


class PhoneMeasurements:
    """The cache: per genome hash, per device, what `measure_genome` returned (or the
    genome's `error` when its export or measurement failed), written after each genome.
    The protocol is part of the file: another protocol starts a file of its own."""

    def __init__(self, path: Path = CACHE, protocol: Protocol = Protocol()):
        self.path, self.protocol = path, protocol
        saved = json.loads(path.read_text()) if path.exists() else {}
        if "protocol" in saved and Protocol.saved(saved["protocol"]) != protocol:
            raise SystemExit(
                f"{path} holds measurements taken with {saved['protocol']}, not "
                f"{protocol.__dict__}: name another cache file"
            )
        self.entries: dict[str, dict[str, Any]] = saved.get("genomes", {})

    def get(self, genome: Genome, devices: list[str]) -> dict[str, Any]:
        """Each device's entry for `genome`, measuring what is missing; {"error": ...} when
        the genome cannot be exported or measured (never retried)."""
        self.measure([genome], devices, workers=1)
        return self.entries[genome.hash()]

    def missing(self, genome: Genome, devices: list[str]) -> bool:
        entry = self.entries.get(genome.hash(), {})
        return "error" not in entry and any(d not in entry for d in devices)

    def measure(self, genomes: list[Genome], devices: list[str], workers: int = 2) -> None:
        """Measure every genome not measured yet on `devices`: exports `workers` at a time
        in their own processes, then each export measured alone, so no timing shares the
        cores with an export; the cache is written after each batch."""
        todo = list({g.hash(): g for g in genomes if self.missing(g, devices)}.values())
        if not todo:
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # torch does not survive a fork
        with (
            ProcessPoolExecutor(workers, context, initializer=_one_torch_thread) as pool,
            tempfile.TemporaryDirectory() as root,
        ):
            reference = self._export_reference(pool, Path(root) / "reference", devices)
            for first in range(0, len(todo), workers):
                self._measure_batch(pool, todo[first : first + workers], devices, reference)

    def _export_reference(self, pool, folder: Path, devices: list[str]) -> Path | None:
        """The protocol's reference preset, exported once for this call (the same genome, so
        the same graphs, every time)."""
        genome = self.protocol.reference_genome()
        if genome is None:
            return None
        pool.submit(export_genome, genome.to_json(), str(folder), devices).result()
        return folder

    def _measure_batch(
        self, pool, batch: list[Genome], devices: list[str], reference: Path | None = None
    ) -> None:
        with tempfile.TemporaryDirectory() as root:
            started = time.perf_counter()
            folders = [Path(root) / str(i) for i in range(len(batch))]
            futures = [
                pool.submit(export_genome, g.to_json(), str(f), devices)
                for g, f in zip(batch, folders)
            ]
            exported: list[float | BaseException] = []
            for future in futures:  # every export finished before anything is timed
                try:
                    exported.append(future.result())
                except BrokenProcessPool:
                    raise  # the export process died: the machine's failure, not the genome's
                except Exception as error:
                    exported.append(error)
            for genome, folder, export_s in zip(batch, folders, exported):
                h, entry = genome.hash(), self.entries.setdefault(genome.hash(), {})
                try:
                    if isinstance(export_s, BaseException):
                        raise export_s
                    entry.update(
                        measure_exported(folder, devices, self.protocol, export_s, reference)
                    )
                except Exception as error:
                    self.entries[h] = entry = _error(error)
                print(
                    f"  measured width {genome.width} depth {genome.depth} on "
                    f"{', '.join(devices)} {entry.get('error', '')}",
                    flush=True,
                )
            print(f"  batch of {len(batch)}: {time.perf_counter() - started:.0f} s", flush=True)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"protocol": self.protocol.__dict__, "genomes": self.entries})
        )
        temporary.replace(self.path)
