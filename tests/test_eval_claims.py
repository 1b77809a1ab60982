"""Pre-registered claims (sara/claims.py, evaluation/comparison/primary.py): the claim form in params, Holm-Bonferroni against a
hand-computed example, and a primary family that never "holds" more than its raw tests would."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.comparison.numbers import StatsConfig, compare
from evaluation.comparison.primary import decide_primary, holm
from evaluation.rubric.dimensions import ALL_DIMS
from evaluation.statistics import PairedReplicates, RunScores, bootstrap_p_value
from sara.claims import Claim, parse_claim
from sara.config import ParamsError, params_from_dict


def test_holm_matches_a_hand_computed_example() -> None:
    """m = 4, p = (0.01, 0.04, 0.03, 0.005). Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 gives 0.02, 0.03,
    0.06, 0.04; the running maximum makes the last 0.06. Back in the input order: 0.03, 0.06, 0.06, 0.02."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])  # 2 x 0.2; max(0.4, 1 x 0.9)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1, and kept monotone
    assert holm([]) == []


@pytest.mark.parametrize("seed", range(20))
def test_holm_is_never_less_conservative_than_raw_p(seed: int) -> None:
    """Adjusted >= raw, never above 1, at most Bonferroni (m x p), and a smaller raw p never gets a larger
    adjusted p (the step-down order)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, size=int(rng.integers(1, 12))) ** 3
    adj = np.array(holm(p))
    assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
    assert np.all(adj <= np.minimum(1.0, len(p) * p) + 1e-15)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= -1e-15)


def test_holm_refuses_what_is_not_a_p_value() -> None:
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        holm([0.5, 1.5])


def test_bootstrap_p_value_is_two_sided_and_never_zero() -> None:
    all_above = PairedReplicates(0.1, np.full(999, 0.1), 18)
    assert bootstrap_p_value(all_above) == pytest.approx(2 / 1000)  # 2 x (1 + 0) / (999 + 1)
    centred = PairedReplicates(0.0, np.linspace(-1, 1, 1001), 18)
    assert bootstrap_p_value(centred) == 1.0
    assert bootstrap_p_value(PairedReplicates(float("nan"), np.zeros(10), 0)) is None


def _pairs(estimates: dict[tuple[str, str], float], spread: float = 0.01):
    """A pair function whose replicates sit around each estimate, normal with sd `spread`."""
    rng = np.random.default_rng(0)
    table = {k: PairedReplicates(v, v + spread * rng.standard_normal(2000), 54) for k, v in estimates.items()}
    return lambda a, b, m: table.get((a, b))


def test_a_claim_holds_only_after_correction() -> None:
    """One claim alone at p ~ 0.03 holds; the same claim in a family of three whose other members are null does
    not, because Holm multiplies its p by 3."""
    alone = _pairs({("sara-or", "videorepa"): 0.02})  # 2 sd above zero: two-sided p ~ 0.045
    one = decide_primary([parse_claim("sara-or > videorepa on TA")], alone, level=0.95)
    (c,) = one["claims"]
    assert c["p_raw"] < 0.05 and c["p_holm"] == c["p_raw"] and c["verdict"] == "holds"
    family = [parse_claim(t) for t in ("sara-or > videorepa on TA", "sft > base on TA", "videorepa > sft on TA")]
    three = decide_primary(family, _pairs({("sara-or", "videorepa"): 0.02, ("sft", "base"): 0.0,
                                           ("videorepa", "sft"): 0.0}), level=0.95)
    first = three["claims"][0]
    assert first["p_raw"] == c["p_raw"] and first["p_holm"] > 0.05 and first["verdict"] == "not shown"
    assert [x["verdict"] for x in three["claims"]] == ["not shown"] * 3
    assert three["alpha"] == pytest.approx(0.05) and three["method"] == "holm"


def test_a_claim_needs_the_claimed_sign_and_a_missing_run_counts_as_p_one() -> None:
    pairs = _pairs({("sara-or", "videorepa"): -0.03, ("sft", "base"): 0.2})
    res = decide_primary([parse_claim("sara-or > videorepa on TA"), parse_claim("sft > base on TA"),
                          parse_claim("sara-and > sft on TA")], pairs, level=0.95)
    wrong_side, holds, missing = res["claims"]
    assert wrong_side["p_raw"] < 0.05 and wrong_side["verdict"] == "not shown"  # clearly lower, not higher
    assert holds["verdict"] == "holds" and holds["half_width"] > 0
    assert missing["verdict"] == "not run" and missing["p_raw"] is None and missing["p_holm"] == 1.0
    # the missing member still counts: sft > base has the smallest p, multiplied by 3 (the family's size), not 2
    assert holds["p_holm"] == pytest.approx(3 * holds["p_raw"], abs=1e-5)


def test_claims_in_params_are_checked_before_any_work() -> None:
    p = params_from_dict({"comparison": {"claims": ["sara-or > videorepa on TA", "sft > base on MQ"]}})
    assert p.comparison.claims == ["sara-or > videorepa on TA", "sft > base on MQ"]
    assert parse_claim("sara-or   >  videorepa on TA") == Claim("sara-or", ">", "videorepa", "TA")
    bad = {
        "sara-or beats videorepa on TA": "not of the form",
        "sara-or > videorepa on entity_count": "metric 'entity_count' is not one of TA, MQ",
        "sara-or > sara-or on TA": "with itself",
        "sara-maybe > sft on TA": "unknown run 'sara-maybe'",
    }
    for claim, why in bad.items():
        with pytest.raises(ParamsError, match=why) as err:
            params_from_dict({"comparison": {"claims": [claim]}})
        assert "comparison.claims" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ParamsError, match="listed twice"):
        params_from_dict({"comparison": {"claims": ["sft > base on TA", "sft  >  base on TA"]}})


# an operator-ordering run's matrix: two SARA operators, the study and the main run among them
SMALL_MATRIX = {"matrix": {"runs": ["sara-or", "sara-and"]}, "report": {"main_run": "sara-or"},
                "study": {"baselines": ["base"]}}


def test_a_claim_on_a_run_the_matrix_does_not_train_is_refused_before_any_work() -> None:
    """A pre-registered claim can only be tested on runs the DAG trains: naming one outside `matrix.runs` (an
    operator-ordering run that kept the default claims on sft and videorepa) is one line naming the claim and the
    run, not a comparison that reports the claim "not run" after the GPU minutes are spent."""
    claims = ["sara-or > sara-and on TA", "sara-and > base on TA"]
    ok = params_from_dict({**SMALL_MATRIX, "comparison": {"claims": claims, "references": ["sara-or"]}})
    assert len(ok.comparison.claims) == 2
    with pytest.raises(ParamsError) as err:
        params_from_dict({**SMALL_MATRIX, "comparison": {"claims": ["sft > base on TA"], "references": ["sara-or"]}})
    assert "'sft > base on TA'" in str(err.value) and "'sft'" in str(err.value) and "matrix.runs" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_reference_the_matrix_does_not_train_is_refused_before_any_work() -> None:
    """`comparison.references` are the rows every run is paired against. One the DAG does not train (an operator-
    ordering run that kept the default references sft and videorepa) used to vanish: the comparison skipped it
    without a word, and comparison.md simply had no paired differences. Now it is one line naming the reference,
    before any stage runs; the base can be a reference."""
    ok = params_from_dict({**SMALL_MATRIX, "comparison": {"references": ["sara-or", "base"]}})
    assert ok.comparison.references == ["sara-or", "base"]
    with pytest.raises(ParamsError) as err:
        params_from_dict({**SMALL_MATRIX, "comparison": {"references": ["sara-or", "videorepa"]}})
    msg = str(err.value)
    assert "comparison.references" in msg and "'videorepa'" in msg and "matrix.runs" in msg and "\n" not in msg


def test_a_comparison_row_the_dag_does_not_score_is_refused_before_any_work() -> None:
    """`comparison.runs` lists the comparison's rows. One that no rubric stage of the DAG scores (a run outside
    `matrix.runs`) used to fail only in the compare stage, after every run had trained and been scored. Now it is
    one line naming the row, with the params; the base and the oracle rows are scored, so they may be listed."""
    ok = params_from_dict({**SMALL_MATRIX, "comparison": {"references": ["sara-or"],
                                                          "runs": ["oracle", "base", "sara-and", "sara-or"]}})
    assert ok.comparison.runs == ["oracle", "base", "sara-and", "sara-or"]
    with pytest.raises(ParamsError) as err:
        params_from_dict({**SMALL_MATRIX, "comparison": {"references": ["sara-or"], "runs": ["sara-or", "sara-xor"]}})
    msg = str(err.value)
    assert "comparison.runs" in msg and "'sara-xor'" in msg and "\n" not in msg


def test_a_claim_that_flips_between_replicates_does_not_hold() -> None:
    """Two replicates of the whole lab pipeline (runs 7 and 9 of docs/lab/replicates.md: the same command, each its
    own base): the run beats the base by +0.3 in the first and falls 0.1 below it in the second, on every prompt.
    With the replicates held fixed the mean, +0.1, held; the comparison resamples them, so it does not."""
    u = sorted((f"p{p:02d}", 0) for p in range(30))
    rng = np.random.default_rng(0)
    base_vals = rng.integers(1, 6, size=(2, len(u), len(ALL_DIMS))).astype(float)  # (replicates, videos, dims)
    run_vals = base_vals + np.array([0.3, -0.1])[:, None, None]
    runs = {"base": RunScores("base", tuple(u), ALL_DIMS, (1024, 2), base_vals),
            "sara-or": RunScores("sara-or", tuple(u), ALL_DIMS, (1024, 2), run_vals)}
    out = compare(runs, ["base"], StatsConfig(n_boot=1000), [parse_claim("sara-or > base on TA")])
    (c,) = out["primary_claims"]["claims"]
    assert c["difference"]["estimate"] == pytest.approx(0.1)
    assert c["difference"]["lo"] < 0 < c["difference"]["hi"] and c["verdict"] == "not shown"
    diff = out["differences"]["base"]["sara-or"]["TA"]
    assert diff["verdict"] == "no difference"
    # each replicate on its own, against the same replicate of the reference (its own base): the flip is visible
    per = out["runs"]["sara-or"]["per_train_seed"]
    assert per["1024"]["differences"]["base"]["TA"]["estimate"] == pytest.approx(0.3)
    assert per["2"]["differences"]["base"]["TA"]["estimate"] == pytest.approx(-0.1)
    assert [per[k]["differences"]["base"]["TA"]["verdict"] for k in ("1024", "2")] == ["higher", "lower"]


def test_rows_of_different_lab_replicates_are_compared_only_on_the_replicates_they_share() -> None:
    """Merged lab runs (a base per replicate): SFT was trained only in replicate 1024, SARA-AND only in replicate
    2, on different bases, so no paired difference between them exists; SARA-OR, in both, is compared with SFT on
    replicate 1024 alone, not on its mean over a replicate SFT never saw."""
    u = sorted((f"p{p:02d}", 0) for p in range(30))
    rng = np.random.default_rng(1)
    base = rng.integers(1, 6, size=(2, len(u), len(ALL_DIMS))).astype(float)  # (replicates 1024 and 2, videos, dims)
    runs = {"base": RunScores("base", tuple(u), ALL_DIMS, (1024, 2), base),
            "sft": RunScores("sft", tuple(u), ALL_DIMS, (1024,), base[:1] + 0.1),
            "sara-and": RunScores("sara-and", tuple(u), ALL_DIMS, (2,), base[1:] + 1.0),
            "sara-or": RunScores("sara-or", tuple(u), ALL_DIMS, (1024, 2), base + np.array([0.3, 2.0])[:, None, None])}
    out = compare(runs, ["sft"], StatsConfig(n_boot=500),
                  [parse_claim("sara-and > sft on TA"), parse_claim("sara-or > sft on TA")])
    across, shared = out["primary_claims"]["claims"]
    assert across["verdict"] == "no shared replicate" and across["difference"] is None and across["p_holm"] == 1.0
    assert shared["difference"]["estimate"] == pytest.approx(0.2)  # replicate 1024: +0.3 - 0.1
    assert shared["n_replicates"] == 1
    table = out["differences"]["sft"]
    assert table["sara-and"]["TA"]["verdict"] == "no shared replicate" and table["sara-and"]["TA"]["estimate"] is None
    assert table["sara-or"]["TA"]["estimate"] == pytest.approx(0.2)
    # one base for every training seed (a DAG with --extra-train-seeds): seeds are not replicates of the base
    one_base = {**runs, "base": RunScores("base", tuple(u), ALL_DIMS, (1024,), base[:1])}
    dag = compare(one_base, ["base"], StatsConfig(n_boot=200), [parse_claim("sara-and > base on TA")])
    assert dag["primary_claims"]["claims"][0]["verdict"] != "no shared replicate"
