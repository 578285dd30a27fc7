"""Multi-fidelity training in the driver: one rung at a time, decisions per generation.

A mixin of `orchestrator.driver.JobRunner` (it uses the runner's records, evaluator, spec and
`_trained`): `_train_rung` trains a candidate on a rung's budget (or takes the cached
result), `_rung_trained` sends a lower rung's result to RUNG_DONE, and `_decide_rungs` takes
the decisions that are due (orchestrator/rung_decisions.py). A job without
`training.fidelities` has one rung, its own budget, and goes straight through.
"""

from __future__ import annotations

from core.metrics import trained_metrics
from core.stage_results import QualityResult

from .candidate_state import CandidateProgress, Stage
from .rung_decisions import decide, due_rung


class RungTraining:
    def _rung_tokens(self, rung: int) -> int | None:
        """A lower rung's token budget; None for the top rung (the job's own budget)."""
        return None if rung == self.rungs.top else self.rungs.budgets[rung]

    def _train_rung(self, p: CandidateProgress, rung: int) -> None:
        """Train on rung `rung`'s budget (the job's budget without fidelities), or take it
        from the evaluation cache."""
        p.rung, tokens = rung, self._rung_tokens(rung)
        cached = self.records.cached_quality(p.genome_hash, tokens)
        if cached is None:
            config = self.spec.training.at_fidelity(self.rungs.budgets[rung])
            self.evaluator.submit_quality(
                p.genome_hash,
                p.candidate.genome.to_json(),
                config.model_dump(mode="json"),
                self.spec.training.timeout_s,
            )
            p.advance(Stage.TRAINING)
            return
        weights = self.records.trained_weights(p.genome_hash, tokens) if tokens else None
        self._rung_trained(p, cached, weights, reused=True)

    def _rung_trained(
        self, p: CandidateProgress, result: QualityResult, weights: bytes | None, reused: bool
    ) -> None:
        """One rung's result: at the top rung the candidate goes on; below it, it waits at
        RUNG_DONE for the generation's decision (orchestrator/rung_decisions.py)."""
        p.compute.add("training", result.compute_s, reused)
        tokens = self.rungs.budgets[p.rung]
        p.rungs.append(
            {"tokens": tokens, "perplexity": result.perplexity, "compute_s": result.compute_s}
        )
        p.candidate.fidelity = tokens
        if p.rung == self.rungs.top or not result.ok:
            self._trained(p, result, weights)
            return
        p.metrics.update(trained_metrics(result))
        p.held = (result, weights)
        p.advance(Stage.RUNG_DONE)

    def _decide_rungs(self, progress: dict[str, CandidateProgress]) -> None:
        """Take every rung decision that is due: promote the best, release the rest."""
        while (rung := due_rung(progress.values())) is not None:
            promoted, released = decide(
                progress.values(), rung, self.rungs, self.spec.objectives, self.constraints
            )
            for p in promoted:
                p.rungs[-1]["promoted"] = True
                self._train_rung(p, rung + 1)
            for p in released:
                p.rungs[-1]["promoted"] = False
                result, weights = p.held
                self._trained(p, result, weights)

    def _weights(self, p: CandidateProgress) -> bytes | None:
        """The trained weights of the rung the candidate's quality was read at."""
        if p.held is not None and p.held[1] is not None:
            return p.held[1]
        return self.records.trained_weights(p.genome_hash, self._rung_tokens(p.rung))
