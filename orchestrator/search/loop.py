"""The search as a state machine over generations, independent of storage and of Ray.

Generation 0 is the initial population (presets moved into the space, then random
genomes); every later generation breeds `population - elitism` offspring from the current
population. When a generation's candidates are all evaluated, survival picks the next
population, and the generation is summarised: Pareto front over everything evaluated so
far, hypervolume in the job's fixed frame, evaluation count.

Which offspring a generation evaluates is the algorithm's choice (the registry in
orchestrator/search/algorithms/: random, nsga2, prescreen, surrogate); every algorithm gets
the ranked parents and every observation there is: the archive, plus `prior(generation)` —
what other jobs measured (the driver reads it from the database, up to a cut-off fixed per
generation). The loop is the ask/tell searcher of orchestrator/search/searcher.py: `ask`
breeds a generation, `tell` records a candidate's metrics at the fidelity (training tokens)
it reached, `complete` closes the generation.

Breeding for generation g draws from `random.Random(f"{seed}:{g}")` and depends only on the
population, the set of genomes already seen and the observations, so a
driver that crashed after breeding but before storing the offspring breeds exactly the same
ones again when it resumes. The persistent driver (orchestrator.driver) and the benchmarks
both run this class.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core import Genome, SearchSpace
from core.job_spec import EvolutionSpec
from core.metrics import Constraint, MetricKind, fitness, parse_metric
from core.prediction_accuracy import prediction_accuracy

from .algorithms.base import make
from .evolution import Child, initial_population
from .fidelity import FIDELITY
from .selection import NormalisationFrame, hypervolume, pareto_front, rank_population, survive
from .surrogate import Observation


@dataclass
class Individual:
    """One genome of the search: where it came from, and its metrics once evaluated (the
    database's row for it is `store.models.Candidate`)."""

    genome: Genome
    generation: int
    parents: list[str] = field(default_factory=list)
    origin: str = "random"
    metrics: dict[str, Any] | None = None  # None until evaluated
    predictions: dict[str, dict[str, float]] = field(default_factory=dict)  # see Child
    fidelity: int | None = None  # training tokens its quality was read at (None: the job's)

    @property
    def hash(self) -> str:
        return self.genome.hash()


@dataclass
class GenerationSummary:
    index: int
    population: list[str]  # hashes of the survivors
    pareto: list[str]  # hashes of the feasible non-dominated set over everything so far
    hypervolume: float
    evaluations: int


class SearchLoop:
    def __init__(
        self,
        space: SearchSpace,
        params: EvolutionSpec,
        objectives: list[str],
        constraints: list[Constraint] | None = None,
        prior: Callable[[int], list[Observation]] | None = None,
    ):
        self.space, self.params = space, params
        self.objectives, self.constraints = objectives, constraints or []
        self.prior = prior
        self.archive: dict[str, Individual] = {}
        self.population: list[str] = []
        self.history: list[GenerationSummary] = []
        self.frame: NormalisationFrame | None = None
        self.algorithm = make(params.algorithm, objectives, self.constraints, params)
        self.selection_info: dict[int, dict[str, Any]] = {}  # generation -> how it was picked

    # ----------------------------------------------------------------- breeding

    def children_for(self, generation: int) -> list[Child]:
        """The candidates generation `generation` evaluates (deterministic, see module doc)."""
        rng = random.Random(f"{self.params.seed}:{generation}")
        seen = set(self.archive)
        if generation == 0:
            presets = self.params.include_presets and not self.algorithm.uniform
            return initial_population(self.space, self.params, rng, seen, presets)
        parents = [self.archive[h] for h in self.population]
        objectives, violation = self.matrix(parents)
        brood = self.algorithm.offspring(
            [c.genome for c in parents],
            rank_population(objectives, violation),
            self.space,
            rng,
            seen,
            self.params.offspring_per_generation,
            self.observations(generation) if self.algorithm.learns else [],
            generation,
        )
        self.selection_info[generation] = brood.info
        return brood.children

    ask = children_for  # the searcher contract's name (orchestrator/search/searcher.py)

    def tell(
        self, genome_hash: str, metrics: dict[str, Any] | None, fidelity: int | None = None
    ) -> None:
        """A candidate's metrics (None: failed), its quality read at `fidelity` tokens."""
        candidate = self.archive[genome_hash]
        candidate.metrics = None if metrics is None else dict(metrics)
        candidate.fidelity = fidelity

    def observations(self, generation: int) -> list[Observation]:
        """Everything measured that the surrogate may learn from when breeding `generation`:
        the archive first, then other jobs' observations of genomes not in it. A candidate
        whose quality was read on a lower rung carries its budget as a fraction of the
        highest budget in the archive (`FIDELITY`), so the models can tell the two apart."""
        evaluated = [c for c in self.archive.values() if c.metrics is not None]
        top = max((c.fidelity for c in evaluated if c.fidelity), default=None)
        own = [
            (
                c.genome,
                {**c.metrics, FIDELITY: c.fidelity / top} if c.fidelity and top else c.metrics,
            )
            for c in evaluated
        ]
        known = set(self.archive)
        others = [
            (g, m)
            for g, m in (self.prior(generation) if self.prior else [])
            if g.hash() not in known
        ]
        return own + others

    def add(self, children: list[Child], generation: int) -> list[Individual]:
        added = []
        for child in children:
            candidate = Individual(
                child.genome,
                generation,
                child.parents,
                child.origin,
                predictions=dict(child.predictions),
            )
            self.archive.setdefault(candidate.hash, candidate)
            added.append(self.archive[candidate.hash])
        return added

    def prediction_report(self, generation: int) -> dict[str, Any]:
        """How well the predictions that picked offspring matched the measurements: for this
        generation's offspring and for the whole job so far. Quality is predicted at the full
        budget, so only candidates whose quality was read there are compared on it."""
        top = max((c.fidelity for c in self.archive.values() if c.fidelity), default=None)

        def comparable(c: Individual, metric: str) -> bool:
            full = c.fidelity is None or c.fidelity == top
            return full or parse_metric(metric).kind != MetricKind.QUALITY

        def pairs(individuals: list[Individual]) -> dict[str, list[tuple[float, float]]]:
            out: dict[str, list[tuple[float, float]]] = {}
            for c in individuals:
                for metric, predicted in c.predictions.items():
                    measured = (c.metrics or {}).get(metric)
                    if measured is not None and comparable(c, metric):
                        out.setdefault(metric, []).append((predicted["mean"], measured))
            return out

        everything = list(self.archive.values())
        return {
            "generation": prediction_accuracy(
                pairs([c for c in everything if c.generation == generation])
            ),
            "job": prediction_accuracy(pairs(everything)),
        }

    # ----------------------------------------------------------------- fitness

    def matrix(self, candidates: list[Individual]) -> tuple[np.ndarray, np.ndarray]:
        rows, violations = [], []
        for c in candidates:
            vector, violation = fitness(c.metrics or {}, self.objectives, self.constraints)
            rows.append(vector)
            violations.append(violation)
        return np.array(rows).reshape(len(candidates), len(self.objectives)), np.array(
            violations, dtype=float
        )

    def complete(self, generation: int, offspring: list[str]) -> GenerationSummary:
        """All of `offspring` (hashes) are evaluated: pick survivors and summarise."""
        if generation == 0 or self.algorithm.keeps_everything:
            pool = list(dict.fromkeys(self.population + offspring))
            elites: list[int] = []
        else:
            parents = [self.archive[h] for h in self.population]
            p_obj, p_vio = self.matrix(parents)
            order = rank_population(p_obj, p_vio).order()
            pool = list(dict.fromkeys(self.population + offspring))
            elites = order[: self.params.elitism]
        objectives, violation = self.matrix([self.archive[h] for h in pool])
        if self.algorithm.keeps_everything:
            keep = list(range(len(pool)))  # random search has no selection: keep everything
        else:
            keep = survive(objectives, violation, self.params.population, protected=elites)
        self.population = [pool[i] for i in keep]

        everything = list(self.archive.values())
        evaluated = [c for c in everything if c.metrics is not None]
        all_obj, all_vio = self.matrix(evaluated)
        if self.frame is None:
            try:
                self.frame = NormalisationFrame.from_objectives(all_obj, all_vio)
            except ValueError:
                self.frame = None
        front = pareto_front(all_obj, all_vio)
        summary = GenerationSummary(
            index=generation,
            population=list(self.population),
            pareto=[evaluated[i].hash for i in front],
            hypervolume=hypervolume(all_obj, all_vio, self.frame) if self.frame else 0.0,
            evaluations=len(evaluated),
        )
        self.history = [h for h in self.history if h.index != generation] + [summary]
        return summary

    # ----------------------------------------------------------------- in-memory run

    def run(
        self,
        evaluate: Callable[[list[Individual]], None],
        on_generation: Callable[[GenerationSummary], None] | None = None,
    ) -> list[GenerationSummary]:
        """Run every generation in memory; `evaluate` fills each candidate's `metrics`."""
        for generation in range(self.params.generations):
            candidates = self.add(self.children_for(generation), generation)
            todo = [c for c in candidates if c.metrics is None]
            if todo:
                evaluate(todo)
            summary = self.complete(generation, [c.hash for c in candidates])
            if on_generation is not None:
                on_generation(summary)
        return self.history
