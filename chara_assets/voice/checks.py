"""Asset checks of the voice chain: what a person wants to know before spending GPU hours.

Dagster runs a check defined apart from its asset over every partition at once (it loads all of
them), so these checks are declared on the assets themselves (``check_specs``) and each asset
computes its own results from what it just built. Each function here takes plain values and
returns the ``AssetCheckResult``; the severity says whether it blocks what follows:

* ``phoneme_coverage`` (text corpus, warning): every native phoneme of the language is in the
  selection; phonemes the pool itself lacks are named (add corpus files for them).
* ``acceptance_rate`` (trimmed clips, blocking below ``min_acceptance``): the share of lines
  with a verified clip. A low share means the cloner or the recogniser is wrong for the
  language (a foreign voice, a wrong model); training on the few lines that passed would waste
  hours.
* ``archive_integrity`` (Piper archive, blocking): every WAV has its transcript, 22050 Hz mono
  16-bit, ``metadata.csv`` matches, nothing damaged — Piper's trainer stops on any of these
  after it has loaded everything.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

PHONEME_COVERAGE = "phoneme_coverage"
ACCEPTANCE_RATE = "acceptance_rate"
ARCHIVE_INTEGRITY = "archive_integrity"


def coverage_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        PHONEME_COVERAGE,
        asset=asset,
        description="Every native phoneme of the language occurs in the selected sentences.",
    )


def acceptance_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        ACCEPTANCE_RATE,
        asset=asset,
        blocking=True,
        description="Share of lines with a verified clip: a warning below `warn_acceptance`, "
        "blocks the Piper archive below `min_acceptance`.",
    )


def integrity_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        ARCHIVE_INTEGRITY,
        asset=asset,
        blocking=True,
        description="Every WAV has its transcript, 22050 Hz mono 16-bit PCM, metadata.csv "
        "matches: what Piper training needs.",
    )


def _listing(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(f"`{x}`" for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def phoneme_coverage(
    selected: Mapping[str, int], pool: Mapping[str, int], *, min_count: int = 1
) -> dg.AssetCheckResult:
    """``selected``/``pool``: per native phoneme, its count in the selection / the whole pool
    (zeros included). Passes when every phoneme occurs at least ``min_count`` times."""
    short = sorted(p for p, n in selected.items() if n < min_count)
    not_in_pool = [p for p in short if pool.get(p, 0) == 0]
    missed = [p for p in short if pool.get(p, 0) > 0]
    covered = len(selected) - len(short)
    metadata: dict[str, dg.RawMetadataValue] = {
        "covered": covered,
        "native_phonemes": len(selected),
    }
    if not_in_pool:
        metadata["not_in_pool"] = dg.MetadataValue.md(
            _listing(not_in_pool) + " (add corpus files with words that have them)"
        )
    if missed:
        metadata["in_pool_not_selected"] = dg.MetadataValue.md(
            _listing(missed) + " (select more sentences: raise `target`)"
        )
    return dg.AssetCheckResult(
        check_name=PHONEME_COVERAGE,
        passed=not short,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def acceptance_rate(
    lines: int, accepted: int, *, warn_below: float, block_below: float
) -> dg.AssetCheckResult:
    """Passes at ``accepted / lines >= warn_below``; a failure below ``block_below`` is an
    error (blocks the archive), otherwise a warning."""
    if not 0 <= block_below <= warn_below <= 1:
        raise ValueError(
            f"acceptance thresholds must satisfy 0 <= min ({block_below}) <= warn "
            f"({warn_below}) <= 1"
        )
    rate = accepted / lines if lines else 0.0
    blocking = rate < block_below
    return dg.AssetCheckResult(
        check_name=ACCEPTANCE_RATE,
        passed=rate >= warn_below,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=(
            f"{accepted} of {lines} lines verified ({rate:.0%})"
            + (
                f": below {block_below:.0%}, the Piper archive is blocked — listen to the "
                "rejected clips in the report"
                if blocking
                else ""
            )
        ),
        metadata={
            "rate": round(rate, 3),
            "lines": lines,
            "accepted": accepted,
            "warn_below": warn_below,
            "block_below": block_below,
        },
    )


def archive_integrity(problems: list[str], clips: int) -> dg.AssetCheckResult:
    """``problems``: from :func:`chara_assets.voice.piper_archive.check_archive`."""
    metadata: dict[str, dg.RawMetadataValue] = {"clips": clips, "problems": len(problems)}
    if problems:
        metadata["first_problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]))
    return dg.AssetCheckResult(
        check_name=ARCHIVE_INTEGRITY,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )
