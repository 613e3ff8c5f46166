"""The promotion gate: a candidate becomes champion only if it beats the one in service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    candidate: float
    champion: float | None  # the champion's score on the same evaluation set, None if there is none


def decide(
    metric: str,
    candidate: float,
    champion: float | None,
    margin: float,
    floor: float,
    champion_error: str | None = None,
) -> GateDecision:
    """Promote when `candidate` clears the floor and beats `champion` by at least `margin`.

    Both scores must come from the same frozen evaluation set. When the champion could not be
    scored (`champion_error`), nothing is promoted automatically: promote by hand once checked.
    """
    if candidate < floor:
        return GateDecision(False, f"{metric} {candidate:.4f} is below the floor {floor:.4f}", metric, candidate,
                            champion)
    if champion_error:
        return GateDecision(
            False, f"the champion could not be evaluated ({champion_error}); not promoted automatically",
            metric, candidate, champion,
        )
    if champion is None:
        return GateDecision(True, f"first model: {metric} {candidate:.4f} clears the floor {floor:.4f}",
                            metric, candidate, None)
    delta = candidate - champion
    if delta >= margin:
        return GateDecision(True, f"{metric} {candidate:.4f} beats the champion's {champion:.4f} by {delta:+.4f} "
                                  f"(margin {margin:.4f})", metric, candidate, champion)
    return GateDecision(False, f"{metric} {candidate:.4f} vs the champion's {champion:.4f}: {delta:+.4f} is less "
                               f"than the margin {margin:.4f}", metric, candidate, champion)
