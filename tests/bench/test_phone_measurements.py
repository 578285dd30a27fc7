"""The phone-scale measurement cache shared by bench.latency_model and bench.search's phone set
(bench/phone_measurements.py): device names, one real export and measurement kept and reused,
another protocol refused, and the phone set's spread-vs-noise reading."""

from __future__ import annotations

import json
import random

import pytest

from bench.phone_measurements import PhoneMeasurements, Protocol, device, metric_suffix
from bench.search import spread_vs_noise
from bench.search_evaluations import PhoneDevice
from core import SearchSpace
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
    assert PhoneMeasurements(path, Protocol(processes=1)).entries == {"h": {}}


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
