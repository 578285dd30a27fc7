"""The LIV latency model (orchestrator/search/latency_model.py): the additive per-class fit,
the GP residual, transfer to a new device class, and one small check against real host
measurements.

The synthetic latencies are made from the model's own cost columns with hidden per-class
coefficients, so what is tested is the fit (NNLS with its pooled prior and cross-validated
ridge), the residual and the transfer — not whether the columns describe a real CPU, which
only the real check (and bench/latency_model.py at phone scale) can say.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.space import SearchSpace
from core.variation import sample
from orchestrator.search.latency_features import LatencyTarget, columns, features
from orchestrator.search.latency_model import LatencyModel, accuracy

METRIC = "prefill_ms@128[phone:int8]"
NOISE = 0.03  # 3 % multiplicative noise: the repeat-to-repeat CV bench/profile_stability aims at
# Hidden cost per unit of each column kind: ns per FLOP, per byte, ms per dispatch, ms fixed;
# each (class, kind) then gets its own factor, drawn once: a CPU runs a depthwise convolution
# or an L x L score matrix at a very different rate per FLOP than a dense GEMM.
KIND_COST = {"flops": 2e-8, "conv": 2e-7, "mix": 5e-8, "bytes": 4e-7, "count": 0.05, "const": 1.0}
CLASS_SPREAD = 0.8  # log std of the per-(class, kind) factors: rates 0.2x to 5x apart


def class_factors(target: LatencyTarget, seed: int = 0) -> np.ndarray:
    draws = np.random.default_rng(seed).normal(0, CLASS_SPREAD, len(columns(target)))
    return np.exp(draws)


def phone_space(widths=(256, 384, 512, 768)) -> SearchSpace:
    return SearchSpace(widths=list(widths), depth_min=8, depth_max=24, vocab_size=16384)


def genomes(n: int, seed: int, widths=(256, 384, 512, 768)) -> list:
    """`n` distinct random genomes of the phone-scale space."""
    rng, found, space = random.Random(seed), {}, phone_space(widths)
    while len(found) < n:
        g = sample(space, rng)
        found.setdefault(g.hash(), g)
    return list(found.values())


def hidden_coefficients(
    target: LatencyTarget, distort: dict[tuple[str, str], float] = {}
) -> np.ndarray:
    base = np.array([KIND_COST[c.kind] for c in columns(target)]) * class_factors(target)
    return base * np.array([distort.get((c.group, c.kind), 1.0) for c in columns(target)])


def synthetic(gs: list, metric: str, seed: int, distort={}, scale=1.0) -> np.ndarray:
    target = LatencyTarget.parse(metric)
    clean = features(gs, target) @ hidden_coefficients(target, distort) * scale
    return clean * np.exp(np.random.default_rng(seed).normal(0, NOISE, len(gs)))


def observations(gs: list, values: np.ndarray, metric: str) -> list:
    return [(g, {metric: float(v)}) for g, v in zip(gs, values)]


@pytest.fixture(scope="module")
def pool() -> list:
    return genomes(96, seed=1)


def test_additive_fit_ranks_held_out_genomes(pool):
    train, test = pool[:64], pool[64:]
    y = synthetic(pool, METRIC, seed=2)
    model = LatencyModel(min_residual=10**6).fit({"phone": observations(train, y[:64], METRIC)})
    result = model.held_out_accuracy(test, list(y[64:]), METRIC)
    # 3 % noise on values that span ~20x: only near-ties can swap, so tau ~0.97 is the
    # ceiling; 0.95 (issue #23 asks 0.9 of real phones) leaves room for those swaps.
    assert result["kendall_tau"] >= 0.95, result
    assert result["mdape"] <= 2 * NOISE, result  # a right model errs by about the noise
    # The GP residual on a right model has only noise to learn: it must not cost the bound.
    with_gp = LatencyModel().fit({"phone": observations(train, y[:64], METRIC)})
    assert with_gp.held_out_accuracy(test, list(y[64:]), METRIC)["kendall_tau"] >= 0.95
    with pytest.raises(ValueError, match="not seen"):
        model.held_out_accuracy(train[:3], list(y[:3]), METRIC)


def test_residual_gp_repairs_a_misspecified_model(pool):
    """The hidden latency grows with width beyond anything per-class linear (wide layers
    falling out of cache): a multiplicative (width/256)^0.8, which the encoding's log2 width
    shows the GP but no non-negative sum of the cost columns can express."""
    train, test = pool[:64], pool[64:]
    widths = np.array([g.width for g in pool], dtype=float)
    y = synthetic(pool, METRIC, seed=3) * (widths / 256) ** 0.8 * np.where(widths > 400, 1.5, 1)
    data = {"phone": observations(train, y[:64], METRIC)}
    plain = LatencyModel(min_residual=10**6).fit(data).held_out_accuracy(test, list(y[64:]), METRIC)
    with_gp = LatencyModel().fit(data)
    assert with_gp.predict(test[:1], METRIC).how.endswith("+residual")
    repaired = with_gp.held_out_accuracy(test, list(y[64:]), METRIC)
    # The GP must remove at least a third of the additive model's median error, and not
    # cost ranking quality.
    assert repaired["mdape"] <= plain["mdape"] * 2 / 3, (plain, repaired)
    assert repaired["kendall_tau"] >= plain["kendall_tau"] - 0.02, (plain, repaired)


@pytest.fixture(scope="module")
def one_width() -> list:
    """Genomes of one width: front members differ by layer mix more than by size, and
    ranking those is where a device's own per-class costs matter."""
    return genomes(96, seed=1, widths=(512,))


def transfer_case(pool, n_target: int, seed: int = 0):
    """Device A measured 64 times; device B = 1.7 x A with attention's mixing 3x and the
    SwiGLU FLOPs 0.6x as costly (a different kernel mix), measured `n_target` times."""
    source, target = "prefill_ms@128[A:int8]", "prefill_ms@128[B:int8]"
    y_a = synthetic(pool, source, seed=4 + 10 * seed)
    distort = {("attention", "mix"): 3.0, ("swiglu", "flops"): 0.6}
    y_b = synthetic(pool, target, seed=5 + 10 * seed, distort=distort, scale=1.7)
    a = observations(pool[:64], y_a[:64], source)
    b = observations(pool[64 : 64 + n_target], y_b[64 : 64 + n_target], target)
    held = pool[64 + n_target :], list(y_b[64 + n_target :])
    return a, b, held, target


def test_transfer_beats_scratch_from_five_measurements(one_width):
    """Over 4 noise draws, B measured 5 times: transfer against a model fitted on B alone."""
    moved, scratch = [], []
    for seed in range(4):
        a, b, (test, measured), target = transfer_case(one_width, 5, seed)
        model = LatencyModel().fit({"A": a, "B": b})
        assert model.predict(test[:1], target).how.startswith("transfer from prefill_ms@128[A")
        moved.append(model.held_out_accuracy(test, measured, target))
        alone = LatencyModel().fit({"B": b})
        scratch.append(alone.held_out_accuracy(test, measured, target))
    tau = [np.mean([r["kendall_tau"] for r in rs]) for rs in (moved, scratch)]
    mdape = [np.mean([r["mdape"] for r in rs]) for rs in (moved, scratch)]
    assert min(r["kendall_tau"] for r in moved) >= 0.8, moved  # issue #23's bound from <= 10
    # Transfer's unknowns are a few scales, scratch's every kind's rate from 5 points: it must
    # halve the error and rank at least as well (depth spreads these genomes' sizes, so both
    # rank well; error is where 5 points show).
    assert mdape[0] <= mdape[1] / 2, (moved, scratch)
    assert tau[0] >= tau[1], (moved, scratch)


def test_scratch_replaces_transfer_only_when_clearly_better():
    """From-scratch is kept over transfer only when its out-of-fold error is lower by more
    than one standard error of the paired difference: equal errors (a tie) and errors that
    differ both ways by about as much keep transfer; a quarter of the error on every point
    replaces it."""
    from orchestrator.search.latency_fit import AdditiveFit
    from orchestrator.search.latency_model import _clearly_better, _Fitted

    rng = np.random.default_rng(0)
    y = np.exp(rng.normal(0, 1, 10))

    def fitted(log_errors) -> _Fitted:
        oof = y * np.exp(np.asarray(log_errors))
        target = LatencyTarget.parse(METRIC)
        return _Fitted(target, set(), AdditiveFit(np.ones(1), 1.0, oof), None, 0.1)

    errors = rng.normal(0, 0.2, 10)
    for other in (errors, -errors, errors[::-1]):  # the same squared errors, or a reordering
        assert not _clearly_better(fitted(other), fitted(errors), y)
    assert _clearly_better(fitted(errors / 4), fitted(errors), y)
    assert not _clearly_better(fitted(errors), fitted(errors / 4), y)
    assert not _clearly_better(fitted(errors / 4), fitted(errors), y[:1])  # one point: no spread


def test_the_fit_set_aside_is_kept_for_reports(one_width):
    """Where transfer and from scratch were compared, the model records which it kept, the
    other fit (which predicts as it would have) and the cross-validated difference that
    decided; a target with no such choice (the source) has none."""
    a, b, (test, measured), target = transfer_case(one_width, 10)
    model = LatencyModel(min_residual=10**6).fit({"A": a, "B": b})
    choice = model.choices[LatencyTarget.parse(target)]
    kept = model.predict(test, target)
    other = model.set_aside(test, target)
    assert choice.kept == ("transfer" if kept.how.startswith("transfer") else "scratch")
    assert other.how == choice.set_aside.how != kept.how
    alone = LatencyModel(min_residual=10**6).fit({"B": b}).predict(test, target)
    scratch, transfer = (other, kept) if choice.kept == "transfer" else (kept, other)
    np.testing.assert_array_equal(scratch.mean, alone.mean)  # one fit: same inputs, same arithmetic
    assert transfer.how.startswith("transfer from prefill_ms@128[A")
    assert np.isfinite(choice.difference) and choice.standard_error > 0
    assert model.set_aside(test, "prefill_ms@128[A:int8]") is None


def test_zero_measurements_predict_the_source_times_the_median_scale(one_width):
    a, b, (test, measured), target = transfer_case(one_width, 5)
    c_metric = "prefill_ms@128[C:int8]"
    model = LatencyModel().fit({"A": a, "B": b})
    zero = model.predict(test, c_metric)
    source = model.predict(test, "prefill_ms@128[A:int8]")
    ratio = zero.mean / source.mean
    assert zero.how.startswith("zero-shot from prefill_ms@128[A")
    assert np.allclose(ratio, ratio[0]) and 1.2 < ratio[0] < 2.6  # B's scale, 1.7 x distortion
    with pytest.raises(ValueError, match="no model"):
        LatencyModel().fit({"B": b[:1]}).predict(test, c_metric)


# A peak-memory world shaped as bench/latency_model measured it (runs 7-9, int8, fitted on
# 96 genomes each), written from the genome's plan, not from the model's columns: ~75 MiB of
# runtime, the V x d table held about 2.6 times whether or not the head is tied, the
# backbone's weights about once, every executed layer a fraction of a MiB by class
# (attention and GLA the most) beyond its weights, and a sliding-window attention layer the
# K/V of every prompt token (float32) on top of the window it keeps.
LAYER_MIB = {"attention": 0.7, "gla": 0.6, "hyena": 0.4}  # others 0.3
PROMPT = 512  # the model's default peak_lengths


def peak_world(genome) -> float:
    from core import costs
    from core.arch import plan

    arch = plan(genome)
    table = arch.vocab_size * arch.width
    head = 0 if arch.tie_embeddings else table
    backbone = costs.params(arch) - table - head
    layers = sum(LAYER_MIB.get(arch.slots[i].op, 0.3) for i in arch.executions)
    windowed = [
        arch.slots[i].genes
        for i in arch.executions
        if arch.slots[i].op == "attention" and arch.slots[i].genes["window"]
    ]
    kv = sum(PROMPT * 2 * g["kv_heads"] * (arch.width // g["heads"]) * 4 for g in windowed)
    return 75.0 + (2.6 * table + 1.1 * backbone + kv) / 2**20 + layers  # int8: a byte a weight


def test_peak_memory_from_byte_and_layer_terms(pool):
    """Held out, every prediction within +-5 % (issue #23's bound) under 1 % noise. Fails
    with the byte terms alone (no per-layer counts, an untied head counted as weights) and
    without the windowed layers' prompt K/V."""
    metric = "peak_mem_mb[phone:int8]"
    y = np.array([peak_world(g) for g in pool])
    y *= np.exp(np.random.default_rng(6).normal(0, 0.01, len(pool)))
    model = LatencyModel(min_residual=10**6).fit({"phone": observations(pool[:64], y[:64], metric)})
    result = model.held_out_accuracy(pool[64:], list(y[64:]), metric)
    predicted = model.predict(pool[64:], metric).mean
    assert np.all(np.abs(predicted / y[64:] - 1) <= 0.05), result
    assert result["mdape"] <= 0.02, result  # 1 % noise


def test_accuracy_counts_the_share_within_ten_percent():
    result = accuracy([(1.0, 1.05), (2.0, 2.5), (3.0, 3.0), (4.0, 4.4)])
    assert result["within_10"] == 0.75 and result["n"] == 4


def measure_prefill(gs: list, length: int) -> list[float]:
    """Fastest warm prefill ms of each genome's float32 export on this host (the agent's
    backend: warm runs in two fresh processes), one genome at a time. The fastest, not the
    median the agent reports: tests share this machine's cores with other work, and a burst
    of it lifts every run of a process (seen: one genome at 3x its own rerun), while no
    contention makes a run faster than the graph allows."""
    import tempfile
    from pathlib import Path

    from core.protocol import MeasurementSpec
    from device_agent.host_backend import measure_task
    from workers.export.onnx_export import export_onnx

    spec = MeasurementSpec(
        prefill_lengths=[length], decode_contexts=[1], warmup=2, repeats=5, processes=2
    )
    values = []
    for g in gs:
        with tempfile.TemporaryDirectory() as folder:
            export_onnx(g.to_json(), folder, verify=False)
            values.append(min(measure_task(Path(folder), spec).prefill[0].samples_ms))
    return values


# Leave-one-out tau over 12 genomes: with no ranking skill tau has a standard error of
# sqrt(2(2n+5) / (9n(n-1))) = 0.22, so 0.5 is ~2.3 standard errors above chance (p ~ 0.01).
# Measured here (2 shared, loaded cores): 0.76 and 0.70 (the decode-MACs proxy: 0.70); the
# gap to issue #23's 0.9 is these tiny models, where per-op overhead the columns only count
# is much of the time, and 11 points to fit from; phone scale is bench/latency_model.py's.
BOUND_REAL_TAU = 0.5


@pytest.mark.slow
def test_real_host_prefill_is_ranked_from_eleven_measurements():
    """12 small genomes exported and measured here; each predicted by a model fitted on the
    other 11 (leave-one-out: every prediction is of a genome its model never saw)."""
    space = SearchSpace(widths=[128, 192, 256], depth_min=2, depth_max=6, vocab_size=2048)
    rng, found = random.Random(7), {}
    while len(found) < 12:
        g = sample(space, rng)
        found.setdefault(g.hash(), g)
    gs = list(found.values())
    metric = "prefill_ms@64[host]"
    measured = measure_prefill(gs, 64)
    pairs = []
    for i, g in enumerate(gs):
        rest = [(h, {metric: v}) for j, (h, v) in enumerate(zip(gs, measured)) if j != i]
        model = LatencyModel().fit({"host": rest})
        pairs.append((float(model.predict([g], metric).mean[0]), measured[i]))
    result = accuracy(pairs)
    assert result["kendall_tau"] >= BOUND_REAL_TAU, (result, pairs)
