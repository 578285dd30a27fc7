"""The job spec: what a user submits to start a search.

Every block rejects unknown fields, and the cross-field rules are checked at submission so
a bad spec is a 422 naming the field, not a failure hours later: hardware objectives need a
profiled device class and a profiled length; the search space is validated by the genome
code; training is `workers.train.config.TrainConfig` itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.genome.space import SearchSpace
from orchestrator.search.metrics import parse_metric
from workers.train.config import TrainConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConstraintSpec(Strict):
    metric: str = Field(description="a metric name, e.g. params or decode_ms@1024[SM-S928B]")
    op: Literal["<=", "<"] = "<="
    value: float

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        parse_metric(metric)
        return metric


class EvolutionSpec(Strict):
    """Defaults follow STAR: population 16, 18 generations, 10% mutation, elitism 2."""

    algorithm: Literal["nsga2", "random"] = "nsga2"
    population: int = Field(default=16, ge=2, le=1024)
    generations: int = Field(default=18, ge=1, le=1000)
    mutation_rate: float = Field(default=0.1, ge=0, le=1)
    crossover_rate: float = Field(default=0.9, ge=0, le=1)
    elitism: int = Field(default=2, ge=0)
    tournament_size: int = Field(default=2, ge=1, le=64)
    seed: int = Field(default=0, ge=0)
    include_presets: bool = True

    @model_validator(mode="after")
    def _elitism_below_population(self) -> "EvolutionSpec":
        if self.elitism >= self.population:
            raise ValueError(f"elitism ({self.elitism}) must be below population "
                             f"({self.population})")
        return self


class ProfilingSpec(Strict):
    devices: list[str] = Field(default_factory=list,
                               description="device classes (DeviceProperties.model) to profile")
    prefill_lengths: list[int] = Field(default_factory=lambda: [128, 512], min_length=1)
    decode_contexts: list[int] = Field(default_factory=lambda: [128, 512], min_length=1)
    warmup: int = Field(default=2, ge=0, le=100)
    repeats: int = Field(default=10, ge=1, le=1000)
    threads: int = Field(default=1, ge=1, le=64)
    timeout_s: float = Field(default=1800, gt=0)

    @field_validator("prefill_lengths", "decode_contexts")
    @classmethod
    def _positive(cls, lengths: list[int]) -> list[int]:
        if any(length < 1 or length > 1 << 20 for length in lengths):
            raise ValueError("lengths must be in [1, 1048576]")
        return sorted(set(lengths))


class JobSpec(Strict):
    name: str = Field(min_length=1, max_length=200)
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    objectives: list[str] = Field(min_length=1, max_length=16,
                                  description="each minimised, e.g. perplexity, params")
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=32)
    evolution: EvolutionSpec = Field(default_factory=EvolutionSpec)
    training: TrainConfig = Field(default_factory=TrainConfig)
    profiling: ProfilingSpec = Field(default_factory=ProfilingSpec)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, objectives: list[str]) -> list[str]:
        if len(set(objectives)) != len(objectives):
            raise ValueError("objectives must not repeat")
        for objective in objectives:
            parse_metric(objective)
        return objectives

    @model_validator(mode="after")
    def _hardware_metrics_are_profiled(self) -> "JobSpec":
        names = self.objectives + [c.metric for c in self.constraints]
        for name in names:
            metric = parse_metric(name)
            if metric.device is not None and metric.device not in self.profiling.devices:
                raise ValueError(f"{name}: device class {metric.device!r} is not in "
                                 f"profiling.devices {self.profiling.devices}")
            if metric.name == "prefill_ms" and metric.length not in self.profiling.prefill_lengths:
                raise ValueError(f"{name}: {metric.length} is not in profiling.prefill_lengths")
            if metric.name == "decode_ms" and metric.length not in self.profiling.decode_contexts:
                raise ValueError(f"{name}: {metric.length} is not in profiling.decode_contexts")
        if "mad_error" in names and not self.training.mad:
            raise ValueError("mad_error needs training.mad = true")
        return self
