"""The asset check of paraphrasing: how many of the LLM's lines were thrown away.

A high share means the model does not follow the prompt (wrong variables, refusals, another
language): the accepted paraphrases are still valid and are uploaded, but the GPU time went
mostly to waste and the model or the prompt needs a look. A warning, never blocking.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

REJECTION_RATE = "rejection_rate"


def rejection_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        REJECTION_RATE,
        asset=asset,
        description="Share of the LLM's lines rejected by the strict restore (warning above "
        "`max_rejection`).",
    )


def rejection_rate(
    reasons: Mapping[str, int], accepted_reason: str, *, max_rejection: float
) -> dg.AssetCheckResult:
    """``reasons``: lines per outcome, ``accepted_reason`` the key of accepted ones. No lines at
    all (nothing needed paraphrasing) passes."""
    if not 0 <= max_rejection <= 1:
        raise ValueError(f"max_rejection must be between 0 and 1, got {max_rejection}")
    total = sum(reasons.values())
    rejected = total - reasons.get(accepted_reason, 0)
    rate = rejected / total if total else 0.0
    top = sorted(
        ((k, v) for k, v in reasons.items() if k != accepted_reason), key=lambda kv: -kv[1]
    )[:3]
    return dg.AssetCheckResult(
        check_name=REJECTION_RATE,
        passed=rate <= max_rejection,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{rejected} of {total} lines rejected ({rate:.0%})"
        + (f"; most often: {', '.join(f'{k} ({v})' for k, v in top)}" if top else ""),
        metadata={
            "rate": round(rate, 3),
            "lines": total,
            "rejected": rejected,
            "max_rejection": max_rejection,
        },
    )
