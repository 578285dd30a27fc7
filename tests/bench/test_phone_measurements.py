"""The phone-scale measurement cache shared by bench.latency_model and bench.search's phone set
(bench/phone_measurements.py): device names, one real export and measurement kept and reused,
another protocol refused, and the phone set's spread-vs-noise reading."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from bench.phone_measurements import PhoneMeasurements, Protocol, device, metric_suffix
from bench.search import spread_vs_noise
from bench.search_evaluations import Evaluations, PhoneDevice
from core import SearchSpace
from core.manifest import GRAPH_REVISION
from core.variation import sample


def test_device_names_say_class_precision_and_threads():
    assert device("host-int8") == ("host", "int8", 1)
    assert device("host-int4-2t") == ("host-2t", "int4", 2)
    assert device("host") == ("host", "float32", 1)
    assert metric_suffix("host-int8") == "[host:int8]"
    assert metric_suffix("host-2t") == "[host-2t]"
    with pytest.raises(ValueError, match="a precision"):
        device("host-fp16")


def test_a_genome_is_measured_once_and_the_cache_is_reused(tmp_path):
    space = SearchSpace(widths=[32], depth_min=2, depth_max=2, vocab_size=512)
    genome = sample(space, random.Random(3))
    protocol = Protocol(prefill=16, decode=16, warmup=1, repeats=3)
    path = tmp_path / "measurements.json"
    first = PhoneMeasurements(path, protocol).get(genome, ["host-int8"])
    own = first["host-int8"]
    assert set(own["metrics"]) == set(protocol.metric_names("host-int8"))
    assert all(v > 0 for v in own["metrics"].values())
    assert own["export_s"] > 0 and own["measure_s"] > 0
    # A second cache object on the same file measures nothing: real timings never repeat to
    # the last digit, so equal readings mean the stored ones were returned.
    again = PhoneMeasurements(path, protocol).get(genome, ["host-int8"])
    assert again["host-int8"] == own
    assert json.loads(path.read_text())["protocol"] == protocol.__dict__


def test_latencies_relative_to_a_reference_preset_timed_beside_them(tmp_path):
    """A small genome against a reference of 8x its width, 3x its depth and vocabulary: every
    latency is a fraction of the reference's, read in the same processes."""
    space = SearchSpace(widths=[32], depth_min=2, depth_max=2, vocab_size=512)
    genome = sample(space, random.Random(3))
    reference = "hyena-edge width=256 layers=3 heads=4 kv_heads=2 ffn=768 vocab=1536"
    protocol = Protocol(
        prefill=32, decode=32, warmup=1, repeats=3, processes=1, reference=reference
    )
    assert protocol.reference_genome().width == 256
    path = tmp_path / "measurements.json"
    own = PhoneMeasurements(path, protocol).get(genome, ["host-int8"])["host-int8"]
    latencies = protocol.metric_names("host-int8")[:2]
    assert set(own["relative"]) == set(own["reference_ms"]) == set(latencies)
    for metric in latencies:
        assert own["reference_ms"][metric] > 0
        # The reference's MACs per token are ~40x the genome's and its graphs have ~3x the
        # nodes: even where per-node overhead rules (tiny decode steps) it takes longer
        # (measured here 0.29 for prefill and 0.33 for decode: a 3x margin to the bound).
        assert 0 < own["relative"][metric] < 1
    # A cache of plain measurements is not mixed with referenced ones.
    with pytest.raises(SystemExit, match="name another cache file"):
        PhoneMeasurements(path, Protocol(prefill=32, decode=32, warmup=1, repeats=3, processes=1))


def test_referenced_latencies_are_ratios_on_one_scale_per_metric():
    from bench.latency_model import add_referenced

    metric = "decode_ms@128[host:int8]"
    measured = {
        h: {"host-int8": {"relative": {metric: ratio}, "reference_ms": {metric: ref}}}
        for h, ratio, ref in (("a", 0.5, 2.0), ("b", 2.0, 3.0), ("c", 1.0, 10.0))
    }
    genomes = [type("G", (), {"hash": lambda self, h=h: h})() for h in "abc"]
    add_referenced(genomes, measured, "host-int8")
    # the reference's median over the genomes (3.0) times each genome's own ratio
    assert [measured[h]["host-int8"]["referenced"][metric] for h in "abc"] == [1.5, 6.0, 3.0]


def test_from_scratch_lists_each_held_out_prediction_beside_its_measurement():
    """The per-genome rows are the predictions the figures were computed from: the share
    within +-10 % and the MdAPE recomputed from them are the reported ones."""
    from bench.latency_model import from_scratch, genomes, parse_args

    args = parse_args(["--measurements", "8", "--test", "4", "--widths", "64", "--vocab", "1024"])
    gs = genomes(args)[:12]
    metrics = Protocol().metric_names("host-int8")  # prefill, decode, peak memory
    rng = np.random.default_rng(0)
    measured = {
        g.hash(): {"host-int8": {"metrics": {m: g.depth * rng.uniform(0.8, 1.25) for m in metrics}}}
        for g in gs
    }
    result = from_scratch(args, gs, measured, "host-int8")[metrics[1]]
    rows = result["held_out"]
    assert [r["hash"] for r in rows] == [g.hash() for g in gs[8:]]
    errors = [abs(r["predicted"] - r["measured"]) / r["measured"] for r in rows]
    assert result["within_10"] == sum(e <= 0.1 for e in errors) / 4
    assert result["mdape"] == pytest.approx(float(np.median(errors)))


def test_a_cache_taken_with_another_protocol_is_refused(tmp_path):
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps({"protocol": Protocol(repeats=3).__dict__, "genomes": {}}))
    with pytest.raises(SystemExit, match="name another cache file"):
        PhoneMeasurements(path, Protocol())


def test_a_cache_from_before_processes_was_taken_with_one_process(tmp_path):
    path = tmp_path / "measurements.json"
    old = {"prefill": 128, "decode": 128, "warmup": 2, "repeats": 10}  # the first run's file
    path.write_text(json.dumps({"protocol": old, "genomes": {"h": {}}}))
    with pytest.raises(SystemExit, match="name another cache file"):
        PhoneMeasurements(path, Protocol())  # three processes now
    assert PhoneMeasurements(path, Protocol(processes=1, graphs=5)).entries == {"h": {}}


def test_a_cache_of_an_older_graph_revision_is_refused(tmp_path):
    """Measurements of graphs the exporter no longer writes (a GQA decode step's revision-5
    int8 graph took 1.4x the time of today's) are not mixed with new ones."""
    path = tmp_path / "measurements.json"
    before = {k: v for k, v in Protocol().__dict__.items() if k != "graphs"}  # a file of rev 5
    path.write_text(json.dumps({"protocol": before, "genomes": {"h": {}}}))
    with pytest.raises(SystemExit, match="name another cache file"):
        PhoneMeasurements(path, Protocol())
    assert Protocol().graphs == GRAPH_REVISION > 5
    assert PhoneMeasurements(path, Protocol(graphs=5)).entries == {"h": {}}


def test_spread_vs_noise_reads_every_measured_candidate_of_the_runs(tmp_path):
    protocol = Protocol()
    cache = PhoneMeasurements(tmp_path / "m.json", protocol)
    decode = protocol.metric_names("host-int8")[1]
    for h, ms, cv in (("a", 2.0, 0.02), ("b", 8.0, 0.04), ("c", 4.0, 0.03), ("z", 100.0, 0.5)):
        cache.entries[h] = {"host-int8": {"metrics": {decode: ms}, "cv": {"decode@128": cv}}}
    runs = [{"archive": [{"hash": "a"}, {"hash": "b"}]}, {"archive": [{"hash": "c"}]}]
    read = spread_vs_noise(runs, PhoneDevice(cache, "host-int8"))[decode]
    assert read["candidates"] == 3  # "z" was measured, but by no run of this set
    assert read["spread_max_over_min"] == pytest.approx(4.0)
    assert read["median_repeat_cv"] == pytest.approx(0.03)
    assert read["spread_over_cv"] == pytest.approx(3.0 / 0.03)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--reference", "hyena-edge width"], "'width' is not key=integer"),
        (["--reference", "nope width=64"], "unknown preset 'nope'"),
        (["--reference", "hyena-edge wdth=64"], "unknown size override 'wdth'"),
        (["--decode-pairs", "0"], "--decode-pairs must be at least 1"),
    ],
)
def test_bad_latency_model_arguments_are_clear_cli_errors(argv, says, capsys):
    from bench.latency_model import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert says in capsys.readouterr().err


def test_search_evaluations_measure_host_decode_again_for_another_graph_revision(tmp_path):
    """bench.search's evaluation cache keeps perplexities across graph revisions (training
    does not depend on the exporter) but not host decode latencies of older graphs."""
    path, config = tmp_path / "evaluations.json", {"tokens_per_step": 1}
    saved = {
        "config": config,
        "perplexity": [["a", 64, 9.5]],
        "decode_ms": {"a": 0.7},
        "compute": [["a", 64, 3.0], ["a", "measure", 2.0]],
    }
    path.write_text(json.dumps(saved))  # a file from before the revision was recorded
    old = Evaluations(None, config, path)
    assert old.perplexity == {("a", 64): 9.5}
    assert old.decode_ms == {} and old.compute == {("a", 64): 3.0}
    path.write_text(json.dumps({**saved, "graphs": GRAPH_REVISION}))
    current = Evaluations(None, config, path)
    assert current.decode_ms == {"a": 0.7} and current.compute[("a", "measure")] == 2.0
    current._save()
    assert json.loads(path.read_text())["graphs"] == GRAPH_REVISION


def test_resplits_refit_a_runs_cached_measurements_the_runs_own_split_first(tmp_path):
    """bench.latency_resplits reads the genomes a run of bench.latency_model measured (by its
    seed, from its cache, in its order) and refits them on other splits; its first split is
    the run's own, so its figures are the run's from-scratch figures on the same data."""
    from bench.latency_model import add_referenced, from_scratch, genomes
    from bench.latency_model import parse_args as run_args
    from bench.latency_resplits import main

    args = run_args(["--measurements", "8", "--test", "4", "--seed", "3"])
    gs = genomes(args)[:13]
    metrics = Protocol().metric_names("host-int8")
    rng = np.random.default_rng(1)
    entries = {gs[0].hash(): {"error": "ExportError: a quantized variant disagreed"}}
    for g in gs[1:]:
        values = {m: g.depth * g.width / 256 * rng.uniform(0.9, 1.1) for m in metrics}
        latencies = metrics[:2]
        entries[g.hash()] = {
            "host-int8": {
                "metrics": values,
                "relative": {m: values[m] / 2.0 for m in latencies},
                "reference_ms": {m: rng.uniform(1.9, 2.1) for m in latencies},
            }
        }
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"protocol": Protocol(reference="x").__dict__, "genomes": entries}))
    out = tmp_path / "resplits.json"
    argv = ["--seeds", "3", "--cache", str(cache), "--splits", "3", "--out", str(out)]
    result = main([*argv, "--measurements", "8", "--test", "4"])
    own, *others = result["runs"]["3"]
    assert len(others) == 2 and json.loads(out.read_text())["runs"]["3"][0] == own
    measured = {g.hash(): json.loads(json.dumps(entries[g.hash()])) for g in gs[1:]}
    add_referenced(gs[1:], measured, "host-int8")
    run = from_scratch(args, gs[1:], measured, "host-int8", "referenced")
    for metric, figures in run.items():  # the referenced latencies
        assert own[metric]["mdape"] == pytest.approx(figures["mdape"])
        assert own[metric]["within_10"] == figures["within_10"]
    assert set(own) == {*metrics[:2], metrics[2]}  # peak memory as measured, beside them
    assert own[metrics[2]]["met"] == (own[metrics[2]]["within_5"] == 1.0)
    cache.write_text(json.dumps({"protocol": Protocol().__dict__, "genomes": entries}))
    with pytest.raises(SystemExit, match="without a reference model: use --values metrics"):
        main(argv)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--seeds", "1", "--cache", "/nonexistent.json"], "no such file"),
        (["--seeds", "1", "--cache", "README.md", "--splits", "0"], "--splits must be at least 1"),
    ],
)
def test_bad_resplit_arguments_are_clear_cli_errors(argv, says, capsys):
    from bench.latency_resplits import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert says in capsys.readouterr().err
