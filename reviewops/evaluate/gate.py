"""The promotion gate: a candidate becomes champion only if it beats the one in service."""

from __future__ import annotations

from dataclasses import dataclass

from reviewops.evaluate.cost import ServingCost


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    candidate: float
    champion: float | None  # the champion's score on the same evaluation set, None if there is none
    cost: ServingCost | None = None  # the candidate's serving cost, when it was measured


@dataclass(frozen=True)
class ServingBudget:
    """What serving may cost: a limit of 0 is no limit."""

    min_batch_rps: float = 0.0
    max_single_p99_ms: float = 0.0

    def breach(self, cost: ServingCost) -> str | None:
        """Which limit `cost` is outside of, with the measured value; None within the budget."""
        if self.min_batch_rps and cost.batch_rps < self.min_batch_rps:
            return f"{cost.batch_rps:,.0f} reviews/s < {self.min_batch_rps:,.0f} (batches)"
        if self.max_single_p99_ms and cost.single_p99_ms > self.max_single_p99_ms:
            return f"single-review p99 {cost.single_p99_ms:,.1f} ms > {self.max_single_p99_ms:,.1f} ms"
        return None


def decide(
    metric: str,
    candidate: float,
    champion: float | None,
    margin: float,
    floor: float,
    champion_error: str | None = None,
    cost: ServingCost | None = None,
    budget: ServingBudget | None = None,
) -> GateDecision:
    """Promote when `candidate` clears the floor, its serving `cost` fits the `budget` and it beats
    `champion` by at least `margin`.

    Both scores must come from the same frozen evaluation set. When the champion could not be
    scored (`champion_error`), nothing is promoted automatically: promote by hand once checked.
    A candidate whose cost was not measured is judged on accuracy alone.
    """
    def verdict(promote: bool, reason: str) -> GateDecision:
        return GateDecision(promote, reason, metric, candidate, champion, cost)

    if candidate < floor:
        return verdict(False, f"{metric} {candidate:.4f} is below the floor {floor:.4f}")
    breach = budget.breach(cost) if budget and cost else None
    if breach:
        return verdict(False, f"serving cost over budget: {breach}")
    if champion_error:
        return verdict(False, f"the champion could not be evaluated ({champion_error}); not promoted automatically")
    if champion is None:
        return verdict(True, f"first model: {metric} {candidate:.4f} clears the floor {floor:.4f}")
    delta = candidate - champion
    if delta >= margin:
        return verdict(True, f"{metric} {candidate:.4f} beats the champion's {champion:.4f} by {delta:+.4f} "
                             f"(margin {margin:.4f})")
    return verdict(False, f"{metric} {candidate:.4f} vs the champion's {champion:.4f}: {delta:+.4f} is less "
                          f"than the margin {margin:.4f}")
