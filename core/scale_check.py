"""The scale-up check: does a search's ranking survive training the winners larger?

STAR evolved at small scale and trained the winners larger. `POST /api/v1/jobs/{id}/scale`
(`tailor scale JOB`) makes a follow-up job from a finished one: the `top` members of its
Pareto front with the lowest perplexity, plus the presets it evaluated, resized to the target
width and depth (`core.scaling.resize_genome`; exact static costs recomputed from the resized
genomes) and trained with a larger budget. When it ends, `scale_report` compares the two
rankings: Kendall tau between search-scale and scale-up perplexity, and for each member its
rank at both scales and whether it is on the front at both.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from .genome import Genome, GenomeError
from .scaling import ScalingError, resize_genome
from .strict import ID_MAX, StrictModel

MAX_TOP = 64
MIN_MEMBERS = 2  # a ranking comparison (Kendall tau) needs two members


class ScaleError(ValueError):
    """Why a request cannot make a scale-up; `field`: the request's field at fault (None:
    several together)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NothingToScale(ScaleError):
    """The source job has nothing to scale, whatever the request."""


class ScaleRequest(StrictModel):
    """The body of `POST /api/v1/jobs/{id}/scale`."""

    top: int = Field(
        default=4,
        ge=1,
        le=MAX_TOP,
        description="front members to take, lowest search-scale perplexity first",
    )
    width: int | None = Field(
        default=None, ge=8, le=16_384, description="target width (default: each member's own)"
    )
    depth: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="target number of LIV slots (larger repeats the backbone's pattern)",
    )
    tokens: int = Field(
        default=200_000,
        ge=1_000,
        le=10**12,
        description="training tokens per member at the target size",
    )
    include_presets: bool = Field(
        default=True, description="also scale the presets the job evaluated, as reference points"
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)


class ScaleMember(StrictModel):
    """One genome of a scale-up job, and where it came from."""

    source_candidate: int = Field(ge=1, le=ID_MAX)
    origin: str = Field(max_length=200)  # "front" or the source's "preset:<name>"
    genome: dict[str, Any]  # resized
    search_perplexity: float | None = None
    search_front: bool = False

    @field_validator("genome")
    @classmethod
    def _a_valid_genome(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A spec may carry a scale block written by hand (a resubmitted scale-up job): its
        genomes are checked here, not first by the orchestrator that trains them."""
        return Genome.from_json(value).to_json()


class ScaleSpec(StrictModel):
    """Set on a scale-up job's spec (`JobSpec.scale`): it evaluates exactly these members in
    one generation instead of searching."""

    source_job: int = Field(ge=1, le=ID_MAX)
    request: ScaleRequest
    members: list[ScaleMember] = Field(min_length=MIN_MEMBERS, max_length=MAX_TOP + 64)


def pick_members(
    candidates: list[dict[str, Any]], front_ids: set[int], request: ScaleRequest
) -> list[ScaleMember]:
    """From the source job's evaluated candidates ({"id", "genome", "origin", "metrics",
    "status"}): the `top` front members by perplexity, then the presets; resized. ScaleError
    names the member a target size does not fit, or too few members to compare."""
    done = [
        c
        for c in candidates
        if c["status"] == "done" and c["metrics"].get("perplexity") is not None
    ]
    front = sorted(
        (c for c in done if c["id"] in front_ids), key=lambda c: c["metrics"]["perplexity"]
    )[: request.top]
    chosen = [(c, "front") for c in front]
    if request.include_presets:
        picked = {c["id"] for c in front}
        chosen += [
            (c, c["origin"])
            for c in done
            if c["origin"].startswith("preset:") and c["id"] not in picked
        ]
    if not chosen:
        raise NothingToScale("the job has no successfully evaluated front member to scale")
    members, seen = [], set()
    for candidate, origin in chosen:
        try:
            resized = resize_genome(
                Genome.coerce(candidate["genome"]), request.width, request.depth
            )
        except (ScalingError, GenomeError) as exc:
            asked = [f for f in ("width", "depth") if getattr(request, f) is not None]
            raise ScaleError(
                f"candidate {candidate['id']} ({origin}) cannot be resized to "
                f"width {request.width}, depth {request.depth}: {exc}",
                asked[0] if len(asked) == 1 else None,
            ) from None
        if resized.hash() in seen:
            continue  # two members that coincide at the target size are trained once
        seen.add(resized.hash())
        members.append(
            ScaleMember(
                source_candidate=candidate["id"],
                origin=origin,
                genome=resized.to_json(),
                search_perplexity=candidate["metrics"]["perplexity"],
                search_front=candidate["id"] in front_ids,
            )
        )
    if len(members) < MIN_MEMBERS:
        raise ScaleError(
            f"a scale-up compares two rankings, so it needs at least {MIN_MEMBERS} members; "
            f"top={request.top}, include_presets={str(request.include_presets).lower()} gives "
            f"{len(members)} (members that coincide at the target size count once): "
            "raise top or include the presets",
            "top",
        )
    return members


def _ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def scale_report(
    spec: ScaleSpec, scaled: dict[str, dict[str, Any]], scaled_front: set[str]
) -> dict[str, Any]:
    """`scaled`: genome hash -> the scale-up candidate ({"id", "metrics", "status"});
    `scaled_front`: hashes on the scale-up job's front. Both rankings side by side, tau."""
    from .prediction_accuracy import accuracy

    rows = []
    for member in spec.members:
        genome_hash = Genome.coerce(member.genome).hash()
        candidate = scaled.get(genome_hash, {})
        rows.append(
            {
                "source_candidate": member.source_candidate,
                "origin": member.origin,
                "candidate": candidate.get("id"),
                "genome_hash": genome_hash,
                "search_perplexity": member.search_perplexity,
                "scaled_perplexity": (candidate.get("metrics") or {}).get("perplexity"),
                "params": (candidate.get("metrics") or {}).get("params"),
                "search_front": member.search_front,
                "scaled_front": genome_hash in scaled_front,
            }
        )
    both = [
        r for r in rows if r["search_perplexity"] is not None and r["scaled_perplexity"] is not None
    ]
    for key, rank_key in (
        ("search_perplexity", "search_rank"),
        ("scaled_perplexity", "scaled_rank"),
    ):
        for row, rank in zip(both, _ranks([r[key] for r in both])):
            row[rank_key] = rank
    tau = accuracy([(r["search_perplexity"], r["scaled_perplexity"]) for r in both])
    front_members = [r for r in rows if r["search_front"]]
    return {
        "source_job": spec.source_job,
        "request": spec.request.model_dump(),
        "members": rows,
        "compared": len(both),
        "kendall_tau": tau["kendall_tau"],
        "kept_on_front": sum(r["scaled_front"] for r in front_members),
        "search_front_members": len(front_members),
    }
