"""The voice chain's asset checks as functions: what passes, what warns, what blocks."""

import dagster as dg
import pytest

from chara_assets.paraphrase import checks as paraphrase_checks
from chara_assets.voice import checks


def test_coverage_names_phonemes_missing_from_the_pool_apart_from_unselected_ones() -> None:
    selected = {"a": 3, "b": 0, "c": 0}
    pool = {"a": 10, "b": 4, "c": 0}
    result = checks.phoneme_coverage(selected, pool)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "`c`" in result.metadata["not_in_pool"].value
    assert "`b`" in result.metadata["in_pool_not_selected"].value
    assert "`c`" not in result.metadata["in_pool_not_selected"].value
    assert result.metadata["covered"].value == 1
    assert checks.phoneme_coverage({"a": 1}, {"a": 1}).passed
    assert not checks.phoneme_coverage({"a": 1}, {"a": 5}, min_count=2).passed


@pytest.mark.parametrize(
    ("accepted", "passed", "severity"),
    [
        (9, True, dg.AssetCheckSeverity.WARN),
        (8, True, dg.AssetCheckSeverity.WARN),
        (7, False, dg.AssetCheckSeverity.WARN),
        (5, False, dg.AssetCheckSeverity.WARN),
        (4, False, dg.AssetCheckSeverity.ERROR),
        (0, False, dg.AssetCheckSeverity.ERROR),
    ],
)
def test_acceptance_warns_then_blocks(accepted: int, passed: bool, severity) -> None:
    result = checks.acceptance_rate(10, accepted, warn_below=0.8, block_below=0.5)
    assert (result.passed, result.severity) == (passed, severity)
    assert result.metadata["rate"].value == accepted / 10
    assert ("blocked" in result.description) == (severity == dg.AssetCheckSeverity.ERROR)


def test_acceptance_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match=r"min \(0\.9\) <= warn \(0\.8\)"):
        checks.acceptance_rate(10, 5, warn_below=0.8, block_below=0.9)


def test_archive_integrity_lists_the_problems() -> None:
    bad = checks.archive_integrity(["kiki/a.wav: no transcript kiki/a.txt"] * 25, 10)
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["problems"].value == 25
    assert bad.metadata["first_problems"].value.count("- kiki/a.wav") == 20
    assert checks.archive_integrity([], 10).passed


def test_paraphrase_rejection_rate_warns_above_the_limit() -> None:
    reasons = {"accepted": 2, "dropped_variable": 15, "refusal": 5, "unparsable": 2}
    result = paraphrase_checks.rejection_rate(reasons, "accepted", max_rejection=0.8)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["rejected"].value == 22 and result.metadata["lines"].value == 24
    assert "dropped_variable (15), refusal (5), unparsable (2)" in result.description
    assert paraphrase_checks.rejection_rate(reasons, "accepted", max_rejection=0.95).passed
    assert paraphrase_checks.rejection_rate({}, "accepted", max_rejection=0.0).passed
    with pytest.raises(ValueError, match="max_rejection"):
        paraphrase_checks.rejection_rate(reasons, "accepted", max_rejection=1.5)
