# size: the genome, its JSON and integer twins and their validation, one definition together
"""The hierarchical genome: an integer vector (what evolution edits) and its JSON twin.

Three levels, as in STAR:
- global genes: width, depth (number of LIV slots), vocabulary size, tied embeddings,
  immediate block-wise repeat (MobileLLM-LS: each block — a run of slots ending with a
  channel mixer — is executed `block_repeat` times in a row with the same weights), and the
  rotary position embedding every attention slot uses (`Rope`: base, and optionally Llama-3's
  frequency scaling);
- operator genes: one set per LIV class (heads, KV heads, window, filter lengths, ...);
- backbone genes: per slot, the LIV class, a featurizer-sharing target (borrow the featurizer
  weights, e.g. K/V projections, of an earlier slot of the same class) and a weight-sharing
  target (reuse every weight of an earlier slot of the same class).

Integer layout (`to_ints`), fixed by the catalog's class-id order:
    [FORMAT, width, depth, vocab_size, tie, block_repeat,
     rope base, rope scaling (0 none, 1 llama3), factor, low freq factor, high freq factor,
     original context,
     <genes of every registered class, class-id order, gene order>,
     <per slot: class_id, featurizer target + 1 (0 = none), weight target + 1 (0 = none)>]
`Genome.from_ints(g.to_ints()) == g` and `Genome.from_json(g.to_json()) == g` hold exactly.

Sharing targets are canonical: they name a slot that itself shares nothing of that kind, so
a genome has one spelling per architecture. The hash covers the phenotype only (globals,
backbone, genes of classes that appear), so genomes differing in unused genes dedupe; the
RoPE setting counts only where an attention slot reads it, and the default one (base
10,000, no scaling: every genome before the setting existed) is left out, so their hashes
did not change.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import catalog

FORMAT = "tailor.genome/1"
INT_FORMAT = 2  # 1: before the RoPE genes (still read: the default RoPE)

GLOBAL_RANGES: dict[str, tuple[int, int]] = {
    "width": (8, 16384),
    "depth": (1, 512),
    "vocab_size": (2, 1 << 20),
    "block_repeat": (1, 4),
}
GLOBAL_KEYS = ("width", "depth", "vocab_size", "tie_embeddings", "block_repeat", "rope")
SLOT_KEYS = ("op", "share_featurizer", "share_weights")
ROPE_SCALINGS = ("none", "llama3")
ROPE_RANGES: dict[str, tuple[int, int]] = {
    "base": (2, 1_000_000_000),
    "factor": (1, 1024),
    "low_freq_factor": (1, 1024),
    "high_freq_factor": (1, 1024),
    "original_context": (1, 1 << 24),
}
ROPE_KEYS = ("base", "scaling", "factor", "low_freq_factor", "high_freq_factor", "original_context")
N_GLOBAL_INTS = {1: 6, 2: 12}  # format + globals (+ the six RoPE genes from format 2)
INTS_PER_SLOT = 3


class GenomeError(ValueError):
    """An invalid genome; `gene` is a dotted path such as `backbone[3].share_weights`."""

    def __init__(self, gene: str, message: str):
        super().__init__(f"{gene}: {message}")
        self.gene = gene
        self.message = message


@dataclass(frozen=True)
class Rope:
    """Rotary position embedding of every attention slot: inverse frequencies
    base^(-2i/head_dim); with scaling "llama3" (Llama 3.1/3.2's `rope_type: llama3`),
    wavelengths longer than original_context / low_freq_factor are divided by `factor`,
    shorter than original_context / high_freq_factor kept, and those between interpolated.
    Scaling genes are ignored (and normalised to their defaults) without scaling."""

    base: int = 10_000
    scaling: str = "none"
    factor: int = 8
    low_freq_factor: int = 1
    high_freq_factor: int = 4
    original_context: int = 8192

    def __post_init__(self) -> None:
        if self.scaling == "none":  # one spelling per function: unused genes at defaults
            for key in ("factor", "low_freq_factor", "high_freq_factor", "original_context"):
                object.__setattr__(self, key, getattr(Rope, key))

    @property
    def is_default(self) -> bool:
        return self == Rope()

    def validate(self) -> None:
        if self.scaling not in ROPE_SCALINGS:
            raise GenomeError(
                "global.rope.scaling",
                f"must be one of {', '.join(ROPE_SCALINGS)}, got {self.scaling!r}",
            )
        for key, (low, high) in ROPE_RANGES.items():
            _check_int(f"global.rope.{key}", getattr(self, key), low, high)
        if self.scaling == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise GenomeError(
                "global.rope.high_freq_factor",
                f"must be greater than low_freq_factor ({self.low_freq_factor}),"
                f" got {self.high_freq_factor}",
            )

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ROPE_KEYS}

    def to_ints(self) -> list[int]:
        return [
            self.base,
            ROPE_SCALINGS.index(self.scaling),
            self.factor,
            self.low_freq_factor,
            self.high_freq_factor,
            self.original_context,
        ]

    @classmethod
    def from_ints(cls, ints: list[int]) -> "Rope":
        base, scaling, factor, low, high, original = ints
        if scaling not in range(len(ROPE_SCALINGS)):
            raise GenomeError(
                "global.rope.scaling", f"must be 0 (none) or 1 (llama3), got {scaling}"
            )
        return cls(base, ROPE_SCALINGS[scaling], factor, low, high, original)

    @classmethod
    def from_json(cls, data: Any) -> "Rope":
        if not isinstance(data, dict):
            raise GenomeError("global.rope", "must be an object with " + ", ".join(ROPE_KEYS))
        _reject_unknown("global.rope", data, set(ROPE_KEYS))
        scaling = data.get("scaling", "none")
        if scaling not in ROPE_SCALINGS:
            raise GenomeError(
                "global.rope.scaling", f"must be one of {', '.join(ROPE_SCALINGS)}, got {scaling!r}"
            )
        for key in ROPE_RANGES:
            if key in data:
                _check_int(f"global.rope.{key}", data[key], *ROPE_RANGES[key])
        return cls(**{"scaling": scaling, **{k: data[k] for k in ROPE_RANGES if k in data}})


LLAMA3_ROPE = Rope(
    base=500_000,
    scaling="llama3",
    factor=32,
    low_freq_factor=1,
    high_freq_factor=4,
    original_context=8192,
)  # Llama 3.2 1B/3B
LFM2_ROPE = Rope(base=1_000_000)  # LFM2 350M-2.6B (rope_theta 1e6, no scaling)


@dataclass
class Slot:
    op: str
    share_featurizer: int | None = None
    share_weights: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "share_featurizer": self.share_featurizer,
            "share_weights": self.share_weights,
        }


@dataclass
class Genome:
    width: int
    vocab_size: int
    backbone: list[Slot]
    tie_embeddings: bool = True
    block_repeat: int = 1
    operators: dict[str, dict[str, int]] = field(default_factory=dict)
    rope: Rope = field(default_factory=Rope)

    def __post_init__(self) -> None:
        # Every registered class carries its genes (STAR keeps a fixed-length operator part).
        for spec in catalog.ordered():
            genes = self.operators.setdefault(spec.name, {})
            for gene in spec.genes:
                genes.setdefault(gene.name, gene.default)

    @property
    def depth(self) -> int:
        return len(self.backbone)

    def copy(self) -> "Genome":
        return copy.deepcopy(self)

    # ----------------------------------------------------------------- JSON twin

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "global": {
                "width": self.width,
                "depth": self.depth,
                "vocab_size": self.vocab_size,
                "tie_embeddings": self.tie_embeddings,
                "block_repeat": self.block_repeat,
                "rope": self.rope.to_json(),
            },
            "operators": {spec.name: dict(self.operators[spec.name]) for spec in catalog.ordered()},
            "backbone": [slot.to_json() for slot in self.backbone],
        }

    @classmethod
    def coerce(cls, data: "Genome | dict[str, Any]") -> "Genome":
        """A `Genome` as it is, or its JSON twin parsed and validated (what Ray and the
        database carry): every package reads genomes through this one parser."""
        return data if isinstance(data, Genome) else cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> "Genome":
        """Parse and validate; unknown keys and wrong types raise GenomeError naming the gene.

        Operator classes or genes left out take their registered defaults.
        """
        if not isinstance(data, dict):
            raise GenomeError("genome", f"must be a JSON object, got {type(data).__name__}")
        _reject_unknown("genome", data, {"format", "global", "operators", "backbone"})
        if data.get("format", FORMAT) != FORMAT:
            raise GenomeError("format", f"must be {FORMAT!r}, got {data.get('format')!r}")
        glob = _parse_global(data.get("global"))
        parsed_ops = _parse_operators(data.get("operators", {}))
        slots = _parse_backbone(data.get("backbone"))
        if "depth" in glob and glob["depth"] != len(slots):
            raise GenomeError(
                "global.depth",
                f"must equal the number of backbone slots ({len(slots)}), got {glob['depth']}",
            )
        rope = Rope.from_json(glob["rope"]) if "rope" in glob else Rope()
        genome = cls(
            width=glob["width"],
            vocab_size=glob["vocab_size"],
            backbone=slots,
            tie_embeddings=glob.get("tie_embeddings", True),
            block_repeat=glob.get("block_repeat", 1),
            operators=parsed_ops,
            rope=rope,
        )
        genome.validate()
        return genome

    # ----------------------------------------------------------------- integer genome

    def to_ints(self) -> list[int]:
        ints = [
            INT_FORMAT,
            self.width,
            self.depth,
            self.vocab_size,
            int(self.tie_embeddings),
            self.block_repeat,
            *self.rope.to_ints(),
        ]
        for spec in catalog.ordered():
            ints.extend(self.operators[spec.name][g.name] for g in spec.genes)
        for slot in self.backbone:
            ints.extend(
                [
                    catalog.REGISTRY[slot.op].class_id,
                    0 if slot.share_featurizer is None else slot.share_featurizer + 1,
                    0 if slot.share_weights is None else slot.share_weights + 1,
                ]
            )
        return ints

    @classmethod
    def from_ints(cls, ints: list[int]) -> "Genome":
        ints = list(ints)
        if not ints or ints[0] not in N_GLOBAL_INTS or len(ints) < N_GLOBAL_INTS[ints[0]]:
            raise GenomeError(
                "ints",
                f"must start with format {INT_FORMAT} and "
                f"{N_GLOBAL_INTS[INT_FORMAT] - 1} global genes",
            )
        _, width, depth, vocab, tie, repeat = ints[:6]
        pos = N_GLOBAL_INTS[ints[0]]
        rope = Rope.from_ints(ints[6:pos]) if ints[0] >= 2 else Rope()
        operators: dict[str, dict[str, int]] = {}
        for spec in catalog.ordered():
            operators[spec.name] = {}
            for gene in spec.genes:
                if pos >= len(ints):
                    raise GenomeError("ints", "too short for the operator genes")
                operators[spec.name][gene.name] = ints[pos]
                pos += 1
        expected = pos + INTS_PER_SLOT * depth
        if len(ints) != expected:
            raise GenomeError("ints", f"depth {depth} needs {expected} integers, got {len(ints)}")
        slots = []
        for i in range(depth):
            class_id, feat, weights = ints[pos + INTS_PER_SLOT * i : pos + INTS_PER_SLOT * (i + 1)]
            try:
                op = catalog.by_class_id(class_id).name
            except KeyError:
                raise GenomeError(
                    f"backbone[{i}].op",
                    f"unknown class id {class_id}; allowed: "
                    f"{sorted(s.class_id for s in catalog.ordered())}",
                ) from None
            slots.append(Slot(op, feat - 1 if feat else None, weights - 1 if weights else None))
        if tie not in (0, 1):
            raise GenomeError("global.tie_embeddings", f"must be 0 or 1, got {tie}")
        genome = cls(
            width=width,
            vocab_size=vocab,
            backbone=slots,
            tie_embeddings=bool(tie),
            block_repeat=repeat,
            operators=operators,
            rope=rope,
        )
        genome.validate()
        return genome

    # ----------------------------------------------------------------- validity

    def used_classes(self) -> list[str]:
        seen = {slot.op for slot in self.backbone}
        return [spec.name for spec in catalog.ordered() if spec.name in seen]

    def validate(self) -> None:
        """Raise GenomeError naming the first bad gene and its allowed values."""
        _check_int("global.width", self.width, *GLOBAL_RANGES["width"])
        _check_int("global.vocab_size", self.vocab_size, *GLOBAL_RANGES["vocab_size"])
        _check_int("global.block_repeat", self.block_repeat, *GLOBAL_RANGES["block_repeat"])
        _check_int("global.depth", self.depth, *GLOBAL_RANGES["depth"])
        if not isinstance(self.tie_embeddings, bool):
            raise GenomeError("global.tie_embeddings", "must be true or false")
        if not isinstance(self.rope, Rope):
            raise GenomeError("global.rope", "must be a Rope")
        self.rope.validate()
        for i, slot in enumerate(self.backbone):  # first: the checks below look classes up
            if not isinstance(slot.op, str) or slot.op not in catalog.REGISTRY:
                raise GenomeError(
                    f"backbone[{i}].op",
                    f"unknown operator class {slot.op!r}; allowed: {_class_names()}",
                )
        for spec in catalog.ordered():
            genes = self.operators[spec.name]
            for gene in spec.genes:
                problem = gene.check(genes[gene.name])
                if problem:
                    raise GenomeError(f"operators.{spec.name}.{gene.name}", problem)
        for name in self.used_classes():
            for gene, problem in catalog.REGISTRY[name].check(self.operators[name], self.width):
                raise GenomeError(f"operators.{name}.{gene}", problem)
        for i, slot in enumerate(self.backbone):
            for kind in ("share_weights", "share_featurizer"):
                target = getattr(slot, kind)
                if target is None:
                    continue
                allowed = self.share_targets(i, kind)
                if isinstance(target, bool) or not isinstance(target, int) or target not in allowed:
                    raise GenomeError(
                        f"backbone[{i}].{kind}",
                        f"must be null or an earlier slot of class {slot.op!r} that shares "
                        f"nothing itself: one of {allowed}, got {target!r}",
                    )
            if slot.share_weights is not None and slot.share_featurizer is not None:
                raise GenomeError(
                    f"backbone[{i}].share_featurizer",
                    "must be null when share_weights is set (all weights include the featurizer)",
                )

    def share_targets(self, index: int, kind: str) -> list[int]:
        """Slots that slot `index` may legally name in its `kind` sharing gene."""
        op = self.backbone[index].op
        return [
            j
            for j in range(index)
            if self.backbone[j].op == op
            and self.backbone[j].share_weights is None
            and (kind == "share_weights" or self.backbone[j].share_featurizer is None)
        ]

    # ----------------------------------------------------------------- identity

    def phenotype(self) -> dict[str, Any]:
        """The architecture only: what two genomes must agree on to be the same model."""
        data = self.to_json()
        data["operators"] = {name: data["operators"][name] for name in self.used_classes()}
        if self.rope.is_default or not self.uses_rope():
            del data["global"]["rope"]  # the same model (and the hash it had before RoPE genes)
        return data

    def uses_rope(self) -> bool:
        return any(catalog.REGISTRY[slot.op].uses_rope for slot in self.backbone)

    def hash(self) -> str:
        canonical = json.dumps(self.phenotype(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line per architecture, e.g. `d128 x8 [attention swiglu hyena_y swiglu ...]`."""
        names = " ".join(
            s.op
            + ("=w%d" % s.share_weights if s.share_weights is not None else "")
            + ("=f%d" % s.share_featurizer if s.share_featurizer is not None else "")
            for s in self.backbone
        )
        rep = f" repeat{self.block_repeat}" if self.block_repeat > 1 else ""
        return f"d{self.width} x{self.depth}{rep} [{names}]"


def _class_names() -> str:
    return ", ".join(spec.name for spec in catalog.ordered())


def _reject_unknown(path: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path != "genome" else unknown[0]
        raise GenomeError(where, f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _check_int(path: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenomeError(path, f"must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise GenomeError(path, f"must be in [{low}, {high}], got {value}")


def _parse_global(glob: Any) -> dict[str, Any]:
    """The global genes checked one by one, so an error names the gene at fault."""
    if not isinstance(glob, dict):
        raise GenomeError("global", "must be an object with " + ", ".join(GLOBAL_KEYS))
    _reject_unknown("global", glob, set(GLOBAL_KEYS))
    for key in ("width", "vocab_size"):
        if key not in glob:
            raise GenomeError(f"global.{key}", "is required")
    tie = glob.get("tie_embeddings", True)
    if not isinstance(tie, bool):
        raise GenomeError("global.tie_embeddings", f"must be true or false, got {tie!r}")
    for key in ("width", "vocab_size", "block_repeat", "depth"):
        if key in glob:
            _check_int(f"global.{key}", glob[key], *GLOBAL_RANGES[key])
    return glob


def _parse_operators(operators: Any) -> dict[str, dict[str, int]]:
    """Operator genes by class, only registered classes and genes (defaults fill the rest)."""
    if not isinstance(operators, dict):
        raise GenomeError("operators", "must be an object keyed by operator class")
    parsed_ops: dict[str, dict[str, int]] = {}
    for name, genes in operators.items():
        if name not in catalog.REGISTRY:
            raise GenomeError(
                f"operators.{name}", f"unknown operator class; allowed: {_class_names()}"
            )
        if not isinstance(genes, dict):
            raise GenomeError(f"operators.{name}", "must be an object of integer genes")
        spec = catalog.REGISTRY[name]
        _reject_unknown(f"operators.{name}", genes, {g.name for g in spec.genes})
        parsed_ops[name] = dict(genes)
    return parsed_ops


def _parse_backbone(backbone: Any) -> list[Slot]:
    """The slots in order, each error naming its index; `Genome.validate` checks the rest."""
    if not isinstance(backbone, list) or not backbone:
        raise GenomeError("backbone", "must be a non-empty list of slots")
    slots = []
    for i, raw in enumerate(backbone):
        path = f"backbone[{i}]"
        if not isinstance(raw, dict):
            raise GenomeError(path, "must be an object with op, share_featurizer, share_weights")
        _reject_unknown(path, raw, set(SLOT_KEYS))
        if "op" not in raw:
            raise GenomeError(f"{path}.op", f"is required; allowed: {_class_names()}")
        slots.append(Slot(raw["op"], raw.get("share_featurizer"), raw.get("share_weights")))
    return slots
