"""Motif analysis: which layer patterns the Pareto set favours (STAR reports such motifs).

Counts LIV-class n-grams along the backbone (n = 2, 3) and sharing patterns (which class
shares weights or featurizers, and at what distance) in the Pareto set and in the whole
population, and reports each motif's frequency in both and their ratio (enrichment).
"""

from __future__ import annotations

from collections import Counter

from core import Genome


def motifs_of(genome: Genome, sizes: tuple[int, ...] = (2, 3)) -> Counter[str]:
    ops = [slot.op for slot in genome.backbone]
    found: Counter[str] = Counter()
    for n in sizes:
        for i in range(len(ops) - n + 1):
            found[" > ".join(ops[i : i + n])] += 1
    for i, slot in enumerate(genome.backbone):
        if slot.share_weights is not None:
            found[f"{slot.op} shares weights (distance {i - slot.share_weights})"] += 1
        if slot.share_featurizer is not None:
            found[f"{slot.op} shares featurizer (distance {i - slot.share_featurizer})"] += 1
    if genome.block_repeat > 1:
        found[f"block repeat x{genome.block_repeat}"] += 1
    return found


def _presence(genomes: list[Genome]) -> Counter[str]:
    """In how many genomes each motif occurs (at least once)."""
    present: Counter[str] = Counter()
    for genome in genomes:
        present.update(set(motifs_of(genome)))
    return present


def enrichment(pareto: list[Genome], population: list[Genome], top: int = 15) -> list[dict]:
    """Motifs most over-represented in the Pareto set relative to the whole population."""
    if not pareto or not population:
        return []
    in_front, overall = _presence(pareto), _presence(population)
    rows = []
    for motif, count in in_front.items():
        front_share = count / len(pareto)
        overall_share = overall[motif] / len(population)
        rows.append(
            {
                "motif": motif,
                "pareto_share": round(front_share, 4),
                "population_share": round(overall_share, 4),
                "enrichment": round(front_share / overall_share, 3),
            }
        )
    rows.sort(key=lambda r: (-r["enrichment"], -r["pareto_share"], r["motif"]))
    return rows[:top]
