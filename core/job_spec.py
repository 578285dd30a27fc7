"""The job spec: what a user submits to start a search, and the one definition of its settings.

Every block rejects unknown fields, and the cross-field rules are checked at submission so
a bad spec is a 422 naming the field, not a failure hours later: hardware objectives need a
profiled device class and a profiled length; the search space is validated by the genome
code; the search space's vocabulary and the tokenizer's are one setting. The orchestrator
runs the search from these same classes (`EvolutionSpec` is what the search loop reads,
`ProfilingSpec.measurement()` what each profiling task carries).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .metrics import canonical, parse_metric
from .precision import ExportSpec
from .protocol import MeasurementSpec
from .scale_check import ScaleSpec
from .search_algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from .space import SearchSpace
from .strict import DAY_S, SEED_MAX, BlamedField, StrictModel
from .training import BPE_VOCAB_RANGE, BYTE_VOCAB_SIZE, TrainConfig
from .wire_text import device_class_problem, require


class ConstraintSpec(StrictModel):
    metric: str = Field(
        max_length=256, description="a metric name, e.g. params or decode_ms@1024[SM-S928B]"
    )
    op: Literal["<=", "<"] = "<="
    value: float

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        return canonical(metric)


class EvolutionSpec(StrictModel):
    """Defaults follow STAR: population 16, 18 generations, 10% mutation, elitism 2."""

    algorithm: Literal[tuple(ALGORITHMS)] = Field(  # type: ignore[valid-type]
        default=DEFAULT_ALGORITHM,
        description="; ".join(f"{name}: {what}" for name, what in ALGORITHMS.items()),
    )
    population: int = Field(default=16, ge=2, le=1024)
    generations: int = Field(default=18, ge=1, le=1000)
    mutation_rate: float = Field(default=0.1, ge=0, le=1)
    crossover_rate: float = Field(default=0.9, ge=0, le=1)
    elitism: int = Field(default=2, ge=0, le=1023)
    tournament_size: int = Field(default=2, ge=1, le=64)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    include_presets: bool = True
    pool_factor: int = Field(
        default=20,
        ge=1,
        le=200,
        description="surrogate and prescreen: offspring bred per offspring evaluated",
    )
    static_walk_rounds: int = Field(
        default=30,
        ge=0,
        le=1000,
        description="surrogate and prescreen: rounds of mutation along the pool's front on "
        "the exact static objectives (params, cache_bytes@L...), whose ends join the pool "
        "before the pick; free to compute, 0 turns it off",
    )
    surrogate_min_points: int = Field(
        default=10,
        ge=2,
        le=100_000,
        description="surrogate: observations each predicted objective needs before "
        "predictions pick offspring; below it the generation is plain NSGA-II",
    )
    latency_prior: bool = Field(
        default=False,
        description="surrogate: the LIV latency model (per-layer cost terms fitted to the "
        "device class's measurements) as an input of every latency and peak-memory model",
    )

    @model_validator(mode="after")
    def _elitism_below_population(self) -> "EvolutionSpec":
        if self.elitism >= self.population:
            raise BlamedField(
                "elitism", f"elitism ({self.elitism}) must be below population ({self.population})"
            )
        return self

    @property
    def offspring_per_generation(self) -> int:
        return self.population - self.elitism


class ProfilingSpec(MeasurementSpec):
    """Which device classes measure every candidate, how (MeasurementSpec), and how long the
    search waits for them."""

    devices: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="device classes (DeviceProperties.model) to profile",
    )
    timeout_s: float = Field(default=1800, gt=0, le=7 * DAY_S)
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="phones measure higher-priority jobs' tasks first, then older jobs' first",
    )
    ahead_of_training: bool = Field(
        default=False,
        description="export and profile each candidate before training it (latency and "
        "memory do not depend on the weights, so the graphs carry untrained ones); a "
        "candidate that breaks a constraint on a measured metric is never trained, and "
        "multi-fidelity promotions compare the measured metrics too",
    )

    @field_validator("devices")
    @classmethod
    def _device_classes(cls, devices: list[str], info: ValidationInfo) -> list[str]:
        stored = bool(info.context and info.context.get("stored"))
        for name in devices:
            require(device_class_problem(name, stored), "device class", name)
        if len(set(devices)) != len(devices):
            raise ValueError("device classes must not repeat")
        return devices

    def measurement(self) -> MeasurementSpec:
        """What one profiling task carries to an agent."""
        fields = set(MeasurementSpec.model_fields)
        return MeasurementSpec.model_validate(self.model_dump(include=fields))


class JobSpec(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    objectives: list[str] = Field(
        min_length=1, max_length=16, description="each minimised, e.g. perplexity, params"
    )
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=32)
    evolution: EvolutionSpec = Field(default_factory=EvolutionSpec)
    training: TrainConfig = Field(default_factory=TrainConfig)
    profiling: ProfilingSpec = Field(default_factory=ProfilingSpec)
    export: ExportSpec = Field(
        default_factory=ExportSpec,
        description="how candidates are exported for profiling and "
        "for quantized metrics (attention export, int4 blocks)",
    )
    scale: ScaleSpec | None = Field(
        default=None,
        description="set by POST /jobs/{id}/scale: "
        "a scale-up job evaluates exactly these members in one "
        "generation (core/scale_check.py)",
    )

    @model_validator(mode="after")
    def _scale_job_is_one_generation(self) -> "JobSpec":
        if self.scale is not None and (
            self.evolution.generations != 1 or self.evolution.population != len(self.scale.members)
        ):
            raise BlamedField(
                "evolution",
                f"a scale-up job (scale) runs one generation of its "
                f"{len(self.scale.members)} members: evolution.generations must "
                f"be 1 and evolution.population {len(self.scale.members)}",
            )
        return self

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, objectives: list[str]) -> list[str]:
        """Stored in their canonical spelling (`[host:float32]` is `[host]`), which is how a
        candidate's metrics are keyed."""
        names = [canonical(objective) for objective in objectives]
        if len(set(names)) != len(names):
            raise ValueError(
                f"objectives must not repeat (after spelling them canonically: {names})"
            )
        return names

    @model_validator(mode="after")
    def _one_vocabulary(self) -> "JobSpec":
        """`search_space.vocab_size` (the genome's, what `params` counts) and the tokenizer's
        vocabulary (what perplexity is scored in) are one setting: a spec that sets only one
        of them sets both; one that sets both differently is rejected, naming both."""
        space, tokenizer = self.search_space, self.training.tokenizer
        space_set = "vocab_size" in space.model_fields_set
        if tokenizer.kind == "byte":
            if space_set and space.vocab_size != BYTE_VOCAB_SIZE:
                raise BlamedField(
                    "search_space.vocab_size",
                    f"search_space.vocab_size ({space.vocab_size}) must equal the vocabulary "
                    f"of training.tokenizer (kind byte: {BYTE_VOCAB_SIZE} tokens); set "
                    f"search_space.vocab_size to {BYTE_VOCAB_SIZE} or leave it out",
                )
            space.vocab_size = BYTE_VOCAB_SIZE
            return self
        tokenizer_set = "vocab_size" in tokenizer.model_fields_set
        if space_set and tokenizer_set and space.vocab_size != tokenizer.vocab_size:
            raise BlamedField(
                "search_space.vocab_size",
                f"search_space.vocab_size ({space.vocab_size}) and "
                f"training.tokenizer.vocab_size ({tokenizer.vocab_size}) must be equal: "
                "they are the same vocabulary; set one of them",
            )
        vocab = tokenizer.vocab_size if tokenizer_set else space.vocab_size
        low, high = BPE_VOCAB_RANGE
        if not low <= vocab <= high:
            field = "training.tokenizer.vocab_size" if tokenizer_set else "search_space.vocab_size"
            raise BlamedField(
                field,
                f"{field} ({vocab}) is the BPE vocabulary of training.tokenizer and must be in "
                f"[{low}, {high}]; use training.tokenizer.kind byte for {BYTE_VOCAB_SIZE} tokens",
            )
        space.vocab_size = tokenizer.vocab_size = vocab
        return self

    @model_validator(mode="after")
    def _hardware_metrics_are_profiled(self) -> "JobSpec":
        fields = [f"objectives.{i}" for i in range(len(self.objectives))]
        fields += [f"constraints.{i}.metric" for i in range(len(self.constraints))]
        names = self.objectives + [c.metric for c in self.constraints]
        for field, name in zip(fields, names):
            metric = parse_metric(name)
            for device_class in metric.classes:
                if device_class not in self.profiling.devices:
                    raise BlamedField(
                        field,
                        f"{name}: device class {device_class!r} is not in "
                        f"profiling.devices {self.profiling.devices}",
                    )
            check = metric.definition.check_spec
            problem = check(self, metric) if check is not None else None
            if problem:
                raise BlamedField(
                    field, problem if problem.startswith(metric.name) else f"{name}: {problem}"
                )
        return self


def stored_spec(data: dict[str, Any]) -> JobSpec:
    """A spec read back from the database: validated as submitted, except rules tightened
    after it was stored (see `device_class_problem`), so a running or finished job never
    becomes unreadable when a rule for new submissions changes."""
    return JobSpec.model_validate(data, context={"stored": True})
