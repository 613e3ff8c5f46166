"""The promotion gate: a candidate becomes champion only if it beats the one in service.

A decision carries its reason twice: `reason`, an English sentence for logs, MLflow and Slack, and
`code` with `args` (the numbers and names the sentence was built from), which the registry records as
tags so that the app can say the same thing in Korean (`reviewops.webapp.ui.gate_reason`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reviewops.evaluate.cost import ServingCost

# the decision codes (`GateDecision.code`); the registry adds its own for promotions by hand and rollbacks
BELOW_FLOOR, OVER_BUDGET_BATCH, OVER_BUDGET_P99 = "below_floor", "over_budget_batch", "over_budget_p99"
CHAMPION_UNSCORED, FIRST_MODEL = "champion_unscored", "first_model"
BEATS_CHAMPION, WITHIN_MARGIN = "beats_champion", "within_margin"

@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    candidate: float
    champion: float | None  # the champion's score on the same evaluation set, None if there is none
    cost: ServingCost | None = None  # the candidate's serving cost, when it was measured
    code: str = ""  # what decided, one of the codes above
    args: dict[str, float | str] = field(default_factory=dict)  # the figures `reason` names, by name


@dataclass(frozen=True)
class ServingBudget:
    """What serving may cost: a limit of 0 is no limit."""

    min_batch_rps: float = 0.0
    max_single_p99_ms: float = 0.0

    def breach(self, cost: ServingCost) -> tuple[str, str, dict[str, float]] | None:
        """Which limit `cost` is outside of: (code, English text with the measured value, figures); None
        within the budget."""
        if self.min_batch_rps and cost.batch_rps < self.min_batch_rps:
            return (OVER_BUDGET_BATCH, f"{cost.batch_rps:,.0f} reviews/s < {self.min_batch_rps:,.0f} (batches)",
                    {"batch_rps": cost.batch_rps, "limit": self.min_batch_rps})
        if self.max_single_p99_ms and cost.single_p99_ms > self.max_single_p99_ms:
            return (OVER_BUDGET_P99,
                    f"single-review p99 {cost.single_p99_ms:,.1f} ms > {self.max_single_p99_ms:,.1f} ms",
                    {"single_p99_ms": cost.single_p99_ms, "limit": self.max_single_p99_ms})
        return None

    def confirmed(self, measure: Callable[[], ServingCost], attempts: int = 3) -> ServingCost:
        """The cost `measure` returns, measured again while it is outside the budget (`attempts` times at
        most), keeping the best figures seen. On a shared machine a neighbour can slow one measurement
        down; a model that is too slow is too slow every time, so a breach counts only once it repeats."""
        cost = measure()
        for _ in range(attempts - 1):
            if self.breach(cost) is None:
                break
            cost = cost.best(measure())
        return cost


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
    def verdict(promote: bool, code: str, reason: str, **args: float | str) -> GateDecision:
        return GateDecision(promote, reason, metric, candidate, champion, cost, code,
                            {"metric": metric, "candidate": candidate, "floor": floor, **args})

    if candidate < floor:
        return verdict(False, BELOW_FLOOR, f"{metric} {candidate:.4f} is below the floor {floor:.4f}")
    breach = budget.breach(cost) if budget and cost else None
    if breach:
        code, text, figures = breach
        return verdict(False, code, f"serving cost over budget: {text}", **figures)
    if champion_error:
        return verdict(False, CHAMPION_UNSCORED, f"the champion could not be evaluated ({champion_error}); "
                                                 "not promoted automatically", error=champion_error)
    if champion is None:
        return verdict(True, FIRST_MODEL, f"first model: {metric} {candidate:.4f} clears the floor {floor:.4f}")
    delta = candidate - champion
    numbers = {"champion": champion, "delta": delta, "margin": margin}
    if delta >= margin:
        return verdict(True, BEATS_CHAMPION, f"{metric} {candidate:.4f} beats the champion's {champion:.4f} by "
                                             f"{delta:+.4f} (margin {margin:.4f})", **numbers)
    return verdict(False, WITHIN_MARGIN, f"{metric} {candidate:.4f} vs the champion's {champion:.4f}: {delta:+.4f} "
                                         f"is less than the margin {margin:.4f}", **numbers)
