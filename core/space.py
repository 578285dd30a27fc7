"""Search spaces: which LIV classes and which gene values a job may explore.

A job's `search_space` is this model's JSON. Every choice list is validated against the
catalog's gene ranges when the job is submitted, so a typo in a job spec is a 422 naming the
field, not a crash in generation 7.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator, model_validator

from . import catalog
from .genome import GLOBAL_RANGES, Genome
from .strict import StrictModel

# Gene-value combinations one class may offer: what validation and repair enumerate, so a
# small spec cannot make the server check millions of them.
MAX_GENE_COMBINATIONS = 4096


class SearchSpace(StrictModel):
    """What random sampling draws from and what mutation and repair keep genomes inside."""

    classes: list[str] = Field(
        default_factory=catalog.default_search_classes,
        min_length=1,
        description="LIV classes a backbone slot may hold",
    )
    widths: list[int] = Field(default_factory=lambda: [64, 96, 128], min_length=1, max_length=64)
    depth_min: int = Field(default=4, ge=1, le=512, description="fewest LIV slots")
    depth_max: int = Field(default=10, ge=1, le=512, description="most LIV slots")
    vocab_size: int = Field(
        default=4096,
        ge=2,
        le=1 << 20,
        description="the genome's vocabulary: the same setting as "
        "training.tokenizer.vocab_size (core.job_spec)",
    )
    tie_embeddings: list[bool] = Field(
        default_factory=lambda: [True, False], min_length=1, max_length=2
    )
    block_repeat: list[int] = Field(default_factory=lambda: [1, 2], min_length=1, max_length=8)
    sharing: bool = Field(default=True, description="allow featurizer and weight sharing genes")
    share_probability: float = Field(
        default=0.15, ge=0, le=1, description="chance a sampled slot shares with an earlier one"
    )
    operator_genes: dict[str, dict[str, list[int]]] = Field(
        default_factory=dict,
        description="per class and gene, the values to explore; unset genes use the "
        "catalog's default choices",
    )

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: list[str]) -> list[str]:
        for name in classes:
            if name not in catalog.REGISTRY:
                raise ValueError(
                    f"unknown LIV class {name!r}; allowed: "
                    f"{', '.join(s.name for s in catalog.ordered())}"
                )
        if len(set(classes)) != len(classes):
            raise ValueError("classes must not repeat")
        return classes

    @field_validator("widths")
    @classmethod
    def _widths_in_range(cls, widths: list[int]) -> list[int]:
        low, high = GLOBAL_RANGES["width"]
        for w in widths:
            if not low <= w <= high or w % 2:
                raise ValueError(f"width {w} must be even and in [{low}, {high}]")
        return sorted(set(widths))

    @field_validator("block_repeat")
    @classmethod
    def _repeat_in_range(cls, repeats: list[int]) -> list[int]:
        low, high = GLOBAL_RANGES["block_repeat"]
        for r in repeats:
            if not low <= r <= high:
                raise ValueError(f"block_repeat {r} must be in [{low}, {high}]")
        return sorted(set(repeats))

    @model_validator(mode="after")
    def _consistent(self) -> "SearchSpace":
        if self.depth_min > self.depth_max:
            raise ValueError(
                f"depth_min ({self.depth_min}) must be <= depth_max ({self.depth_max})"
            )
        for name, genes in self.operator_genes.items():
            if name not in catalog.REGISTRY:
                raise ValueError(f"operator_genes.{name}: unknown LIV class")
            spec = catalog.REGISTRY[name]
            for gene_name, values in genes.items():
                try:
                    gene = spec.gene(gene_name)
                except KeyError:
                    raise ValueError(
                        f"operator_genes.{name}.{gene_name}: unknown gene; allowed: "
                        f"{', '.join(g.name for g in spec.genes)}"
                    ) from None
                if not values or len(values) > 64:
                    raise ValueError(
                        f"operator_genes.{name}.{gene_name}: must hold 1 to 64 "
                        f"values, got {len(values)}"
                    )
                for v in values:
                    problem = gene.check(v)
                    if problem:
                        raise ValueError(f"operator_genes.{name}.{gene_name}: {problem}")
        for name in self.classes:  # counted, not enumerated: validation cost stays bounded
            combinations = math.prod(
                len(self.gene_choices(name, g.name)) for g in catalog.REGISTRY[name].genes
            )
            if combinations > MAX_GENE_COMBINATIONS:
                raise ValueError(
                    f"operator_genes.{name}: {combinations:,} combinations of gene values; at "
                    f"most {MAX_GENE_COMBINATIONS:,} (fewer values per gene)"
                )
        if not any(self.choices_ok(name) for name in self.classes):
            raise ValueError("no class in `classes` has a valid gene choice for any width")
        return self

    # ----------------------------------------------------------------- choices

    def gene_choices(self, op: str, gene: str) -> list[int]:
        chosen = self.operator_genes.get(op, {}).get(gene)
        if chosen:
            return sorted(set(chosen))
        spec = catalog.REGISTRY[op].gene(gene)
        return list(spec.search_choices or (spec.default,))

    def valid_gene_sets(self, op: str, width: int) -> list[dict[str, int]]:
        """Every combination of this class's gene choices that is valid at `width`."""
        spec = catalog.REGISTRY[op]
        combos: list[dict[str, int]] = [{}]
        for gene in spec.genes:
            combos = [{**c, gene.name: v} for c in combos for v in self.gene_choices(op, gene.name)]
        return [c for c in combos if not spec.check(c, width)]

    def choices_ok(self, op: str) -> bool:
        return any(self.valid_gene_sets(op, w) for w in self.widths)

    def contains(self, genome: Genome) -> list[str]:
        """Reasons the genome lies outside this space (empty when inside)."""
        reasons = []
        if genome.width not in self.widths:
            reasons.append(f"global.width {genome.width} not in {self.widths}")
        if not self.depth_min <= genome.depth <= self.depth_max:
            reasons.append(
                f"global.depth {genome.depth} not in [{self.depth_min}, {self.depth_max}]"
            )
        if genome.vocab_size != self.vocab_size:
            reasons.append(f"global.vocab_size {genome.vocab_size} != {self.vocab_size}")
        if genome.tie_embeddings not in self.tie_embeddings:
            reasons.append(f"global.tie_embeddings {genome.tie_embeddings} not allowed")
        if genome.block_repeat not in self.block_repeat:
            reasons.append(f"global.block_repeat {genome.block_repeat} not in {self.block_repeat}")
        for i, slot in enumerate(genome.backbone):
            if slot.op not in self.classes:
                reasons.append(f"backbone[{i}].op {slot.op!r} not in {self.classes}")
            if not self.sharing and (
                slot.share_weights is not None or slot.share_featurizer is not None
            ):
                reasons.append(f"backbone[{i}] shares weights but sharing is off")
        for op in genome.used_classes():
            if op in self.classes and genome.operators[op] not in self.valid_gene_sets(
                op, genome.width
            ):
                reasons.append(f"operators.{op} {genome.operators[op]} not among the choices")
        return reasons
