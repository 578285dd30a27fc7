"""Variation of genomes: random sampling, repair, mutation, two-point backbone crossover.

Every function returns a genome that passes `Genome.validate()` and lies inside the search
space: mutation and crossover may produce anything, and `repair` then moves each gene to the
nearest legal value (never a silent crash, never a discarded child).
"""

from __future__ import annotations

import random
from typing import Any

from . import catalog
from .genome import Genome, Slot
from .space import SearchSpace

SHARE_KINDS = ("share_weights", "share_featurizer")


def _nearest(value: int, choices: list[int]) -> int:
    return min(choices, key=lambda c: (abs(c - value), c))


def _closest_gene_set(current: dict[str, int], sets: list[dict[str, int]]) -> dict[str, int]:
    def distance(candidate: dict[str, int]) -> tuple[float, list[int]]:
        d = sum(
            abs(candidate[k] - current.get(k, candidate[k])) / (1 + abs(candidate[k]))
            for k in candidate
        )
        return d, [candidate[k] for k in sorted(candidate)]

    return dict(min(sets, key=distance))


def _closest_class(op: str, usable: list[str]) -> str:
    """A usable stand-in for `op`: same kind (sequence/channel) first, then the longest
    shared name prefix (hyena_modal -> hyena_x or hyena), then catalog order."""
    kind = catalog.REGISTRY[op].kind if op in catalog.REGISTRY else None

    def prefix(name: str) -> int:
        return next(
            (i for i, (a, b) in enumerate(zip(op, name)) if a != b), min(len(op), len(name))
        )

    return min(
        usable,
        key=lambda c: (catalog.REGISTRY[c].kind != kind, -prefix(c), catalog.REGISTRY[c].class_id),
    )


def repair(genome: Genome, space: SearchSpace) -> Genome:
    """Return a valid genome inside `space`, as close to `genome` as the rules allow."""
    g = genome.copy()
    usable_widths = [
        w for w in space.widths if any(space.valid_gene_sets(c, w) for c in space.classes)
    ]
    g.width = _nearest(g.width, usable_widths)
    g.vocab_size = space.vocab_size
    if g.tie_embeddings not in space.tie_embeddings:
        g.tie_embeddings = space.tie_embeddings[0]
    g.block_repeat = _nearest(g.block_repeat, space.block_repeat)

    # Depth: cut the tail, or extend by cycling the existing slots (sharing nothing).
    if g.depth > space.depth_max:
        g.backbone = g.backbone[: space.depth_max]
    i = 0
    while g.depth < space.depth_min:
        g.backbone.append(Slot(g.backbone[i % g.depth].op if g.backbone else space.classes[0]))
        i += 1

    usable = [c for c in space.classes if space.valid_gene_sets(c, g.width)]
    for slot in g.backbone:
        if slot.op not in usable:
            slot.op = _closest_class(slot.op, usable)
    for op in g.used_classes():
        sets = space.valid_gene_sets(op, g.width)
        if g.operators[op] not in sets:
            g.operators[op] = _closest_gene_set(g.operators[op], sets)

    _repair_sharing(g, allow=space.sharing)
    g.validate()
    return g


def _root(g: Genome, index: int, kind: str) -> int:
    """Follow sharing links down to the slot that owns the weights."""
    seen = set()
    while index not in seen:
        seen.add(index)
        slot = g.backbone[index]
        nxt = (
            slot.share_weights
            if slot.share_weights is not None
            else (slot.share_featurizer if kind == "share_featurizer" else None)
        )
        if nxt is None or not isinstance(nxt, int) or not 0 <= nxt < index:
            return index
        index = nxt
    return index


def _repair_sharing(g: Genome, allow: bool) -> None:
    for i, slot in enumerate(g.backbone):
        if not allow:
            slot.share_weights = slot.share_featurizer = None
            continue
        for kind in SHARE_KINDS:
            target = getattr(slot, kind)
            if target is None:
                continue
            if isinstance(target, int) and 0 <= target < i:
                target = _root(g, target, kind)
            setattr(slot, kind, target if target in g.share_targets(i, kind) else None)
        if slot.share_weights is not None:
            slot.share_featurizer = None


def mutate(genome: Genome, space: SearchSpace, rng: random.Random, rate: float) -> Genome:
    """Resample each gene with probability `rate`; then repair."""
    g = genome.copy()
    if rng.random() < rate:
        g.width = rng.choice(space.widths)
    if rng.random() < rate:
        g.tie_embeddings = rng.choice(space.tie_embeddings)
    if rng.random() < rate:
        g.block_repeat = rng.choice(space.block_repeat)
    if rng.random() < rate and space.depth_min < space.depth_max:
        if rng.random() < 0.5 and g.depth > space.depth_min:
            _delete_slot(g, rng.randrange(g.depth))
        elif g.depth < space.depth_max:
            at = rng.randrange(g.depth + 1)
            g.backbone.insert(at, Slot(rng.choice(space.classes)))
            _shift_after_insert(g, at)
    for op in g.used_classes():
        for gene in catalog.REGISTRY[op].genes:
            if rng.random() < rate:
                g.operators[op][gene.name] = rng.choice(space.gene_choices(op, gene.name))
    for i, slot in enumerate(g.backbone):
        if rng.random() < rate:
            slot.op = rng.choice(space.classes)
        if space.sharing and rng.random() < rate:
            kind = rng.choice(SHARE_KINDS)
            setattr(slot, kind, rng.choice([None, *range(i)]))
    return repair(g, space)


def _delete_slot(g: Genome, index: int) -> None:
    del g.backbone[index]
    for slot in g.backbone[index:]:
        for kind in SHARE_KINDS:
            target = getattr(slot, kind)
            if target is None:
                continue
            setattr(
                slot, kind, None if target == index else (target - 1 if target > index else target)
            )


def _shift_after_insert(g: Genome, index: int) -> None:
    # Later slots keep pointing at the same weights: their targets at or past the new slot
    # move up by one.
    for slot in g.backbone[index + 1 :]:
        for kind in SHARE_KINDS:
            target = getattr(slot, kind)
            if target is not None and target >= index:
                setattr(slot, kind, target + 1)


def crossover(
    a: Genome, b: Genome, space: SearchSpace, rng: random.Random
) -> tuple[Genome, Genome]:
    """Two-point crossover on the backbone, operator genes per class from either parent."""
    n = min(a.depth, b.depth)
    i, j = sorted(rng.sample(range(n + 1), 2)) if n >= 1 else (0, 0)
    child_a, child_b = a.copy(), b.copy()
    child_a.backbone = a.copy().backbone[:i] + b.copy().backbone[i:j] + a.copy().backbone[j:]
    child_b.backbone = b.copy().backbone[:i] + a.copy().backbone[i:j] + b.copy().backbone[j:]
    for spec in catalog.ordered():
        if rng.random() < 0.5:
            child_a.operators[spec.name], child_b.operators[spec.name] = (
                dict(b.operators[spec.name]),
                dict(a.operators[spec.name]),
            )
    return repair(child_a, space), repair(child_b, space)


def sample(space: SearchSpace, rng: random.Random) -> Genome:
    """A random valid genome inside `space`."""
    width = rng.choice(space.widths)
    depth = rng.randint(space.depth_min, space.depth_max)
    usable = [c for c in space.classes if space.valid_gene_sets(c, width)] or space.classes
    backbone = [Slot(rng.choice(usable)) for _ in range(depth)]
    operators: dict[str, Any] = {}
    for op in space.classes:
        sets = space.valid_gene_sets(op, width)
        if sets:
            operators[op] = dict(rng.choice(sets))
    genome = Genome(
        width=width,
        vocab_size=space.vocab_size,
        backbone=backbone,
        tie_embeddings=rng.choice(space.tie_embeddings),
        block_repeat=rng.choice(space.block_repeat),
        operators=operators,
    )
    if space.sharing:
        for i in range(depth):
            if rng.random() < space.share_probability:
                kind = rng.choice(SHARE_KINDS)
                targets = genome.share_targets(i, kind)
                if targets:
                    setattr(genome.backbone[i], kind, rng.choice(targets))
    return repair(genome, space)
