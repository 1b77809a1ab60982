"""Bootstrap intervals, paired differences and seed spread (evaluation/statistics.py), on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.rubric.aggregate import per_method
from evaluation.rubric.dimensions import ALL_DIMS, TA_DIMS
from evaluation.statistics import (
    Interval,
    PairedReplicates,
    RunScores,
    bootstrap_p_value,
    bootstrap_weights,
    half_width,
    metric_value,
    paired_difference,
    paired_replicates,
    run_interval,
    seed_spread,
    verdict,
)

TA = [ALL_DIMS.index(d) for d in TA_DIMS]


def units(n_prompts: int = 6, n_seeds: int = 3) -> list[tuple[str, int]]:
    return sorted((f"p{p:02d}", s) for p in range(n_prompts) for s in range(n_seeds))


def random_run(name: str, u: list, n_train: int = 2, seed: int = 0, shift: float = 0.0) -> RunScores:
    rng = np.random.default_rng(seed)
    vals = rng.integers(1, 6, size=(n_train, len(u), len(ALL_DIMS))).astype(float) + shift
    vals[:, :, ALL_DIMS.index("person_appearance")] = np.nan  # not applicable without persons
    return RunScores(name, tuple(u), ALL_DIMS, tuple(range(n_train)), vals)


def test_weights_rows_sum_to_the_sample_size_and_are_seeded():
    u = units()
    for scheme in ("prompt", "prompt_seed", "video"):
        w = bootstrap_weights(u, 200, seed=3, scheme=scheme)
        assert w.shape == (200, len(u))
        np.testing.assert_array_equal(w.sum(1), len(u))
        np.testing.assert_array_equal(w, bootstrap_weights(u, 200, seed=3, scheme=scheme))
    assert not np.array_equal(bootstrap_weights(u, 50, 1), bootstrap_weights(u, 50, 2))


def test_prompt_scheme_keeps_all_seeds_of_a_drawn_prompt_together():
    u = units(5, 3)
    w = bootstrap_weights(u, 100, seed=0, scheme="prompt")
    by_prompt = w.reshape(100, 5, 3)  # units are sorted by prompt, then seed
    assert (by_prompt == by_prompt[:, :, :1]).all()


def test_bad_scheme_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown bootstrap scheme 'bogus'"):
        bootstrap_weights(units(), 10, 0, scheme="bogus")  # type: ignore[arg-type]


def test_point_estimate_is_the_rubric_aggregation():
    """The estimate equals per_method's TA (skip_inapplicable) for one training seed: the table's number."""
    u = units(4, 2)
    run = random_run("sft", u, n_train=1, seed=5)
    run.values[0, 0, ALL_DIMS.index("entity_count")] = np.nan  # one invalid score: that dim averages over 7 videos
    videos = [{"grounded": {d: (None if np.isnan(run.values[0, i, k]) else int(run.values[0, i, k]))
                            for k, d in enumerate(ALL_DIMS)}} for i in range(len(u))]
    expected = per_method(videos, skip_inapplicable=True)["TA"]["mean"]
    assert metric_value(run.values, TA)[0] == pytest.approx(expected, abs=1e-12)


def test_identical_runs_give_a_zero_difference_interval():
    u = units()
    a = random_run("sara-or", u, seed=1)
    b = RunScores("sft", a.units, a.dims, a.train_seeds, a.values.copy())
    w = bootstrap_weights(u, 500, seed=0)
    diff, n = paired_difference(a, b, TA, w, u)
    assert (diff.estimate, diff.lo, diff.hi) == (0.0, 0.0, 0.0)
    assert n == len(u) and verdict(diff) == "no difference"


def test_constant_shift_gives_exactly_that_shift():
    u = units()
    b = random_run("sft", u, seed=2)
    a = RunScores("sara-or", b.units, b.dims, b.train_seeds, b.values + 0.25)
    diff, _ = paired_difference(a, b, TA, bootstrap_weights(u, 500, seed=0), u)
    for x in (diff.estimate, diff.lo, diff.hi):
        assert x == pytest.approx(0.25, abs=1e-12)
    assert verdict(diff) == "higher"
    neg, _ = paired_difference(b, a, TA, bootstrap_weights(u, 500, seed=0), u)
    assert verdict(neg) == "lower"


def test_pairing_removes_shared_prompt_difficulty():
    """Prompt difficulty shared by both runs widens each run's interval but cancels in the paired difference."""
    u = units(12, 3)
    rng = np.random.default_rng(0)
    difficulty = np.repeat(rng.normal(0, 1.0, 12), 3)[None, :, None]  # (1, V, 1) per prompt
    noise = rng.normal(0, 0.05, (1, len(u), len(ALL_DIMS)))
    base = 3 + difficulty + noise
    a = RunScores("a", tuple(u), ALL_DIMS, (0,), base + 0.1)
    b = RunScores("b", tuple(u), ALL_DIMS, (0,), base + rng.normal(0, 0.05, base.shape))
    w = bootstrap_weights(u, 2000, seed=1)
    ia = run_interval(a, TA, w, u)
    diff, _ = paired_difference(a, b, TA, w, u)
    assert ia.hi - ia.lo > 0.5  # the prompts differ a lot
    assert diff.hi - diff.lo < 0.1 and verdict(diff) == "higher"


def test_coverage_of_the_mean_tells_a_95_from_a_90_percent_interval():
    """Percentile cluster-bootstrap intervals of a mean cover the true mean about as often as their level says.

    1000 simulated experiments of 40 prompts: the binomial sd of a coverage near 0.94 is 0.0075, so each window is
    at least 2.5 sd wide around the observed value (0.939 and 0.892 for this seed; the percentile interval
    under-covers by about 1% at 40 prompts) and the neighbouring level lies outside it (a 90% interval reported as
    95% covers about 0.89; an 80% one reported as 90%, about 0.79)."""
    rng = np.random.default_rng(123)
    u = units(40, 1)
    hits, trials = {0.95: 0, 0.90: 0}, 1000
    for _ in range(trials):
        x = rng.normal(3.0, 1.0, size=(1, len(u), 1))  # true mean 3
        run = RunScores("r", tuple(u), ("d",), (0,), x)
        w = bootstrap_weights(u, 400, seed=int(rng.integers(1 << 30)))
        wide, narrow = run_interval(run, [0], w, u, level=0.95), run_interval(run, [0], w, u, level=0.90)
        assert wide.lo <= narrow.lo <= narrow.hi <= wide.hi
        hits[0.95] += wide.lo <= 3.0 <= wide.hi
        hits[0.90] += narrow.lo <= 3.0 <= narrow.hi
    assert 0.92 <= hits[0.95] / trials <= 0.97, hits
    assert 0.865 <= hits[0.90] / trials <= 0.93, hits


def test_seed_spread_reports_each_training_seed():
    u = units(3, 1)
    vals = np.full((2, len(u), 1), 3.0)
    vals[1] = 4.0
    run = RunScores("sft", tuple(u), ("d",), (0, 1), vals)
    sp = seed_spread(run, [0])
    assert sp["per_seed"] == {"0": 3.0, "1": 4.0}
    assert sp["std"] == pytest.approx(np.std([3, 4], ddof=1)) and (sp["min"], sp["max"]) == (3.0, 4.0)
    assert metric_value(run.values, [0])[0] == 3.5  # a run's value is the mean over its training seeds
    assert seed_spread(RunScores("x", tuple(u), ("d",), (0,), vals[:1]), [0])["std"] is None


def test_missing_videos_pair_on_the_common_set_only():
    u = units(4, 2)
    a = random_run("a", u, n_train=1, seed=3)
    keep = [i for i, x in enumerate(u) if x != ("p00", 0)]
    b = RunScores("b", tuple(u[i] for i in keep), ALL_DIMS, (0,), a.values[:, keep])
    diff, n = paired_difference(a, b, TA, bootstrap_weights(u, 100, 0), u)
    assert n == len(u) - 1 and diff.estimate == 0.0 and diff.lo == diff.hi == 0.0


def test_shape_mismatch_names_the_run():
    with pytest.raises(ValueError, match="run sft: values"):
        RunScores("sft", (("p", 0),), ("d",), (0,), np.zeros((2, 1, 1)))



# ------------------------------------------------------------------------- edges (from the mutation survivors)


def test_bad_inputs_are_one_line_each():
    u = units(2, 1)
    with pytest.raises(ValueError, match=r"^run r: units must be sorted and unique$"):
        RunScores("r", (u[1], u[0]), ("d",), (0,), np.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match=r"^unknown bootstrap scheme 'bogus': expected one of prompt, prompt_seed, video$"):
        bootstrap_weights(u, 10, 0, scheme="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^n_boot must be >= 1, got 0$"):
        bootstrap_weights(u, 0, 0)
    with pytest.raises(ValueError, match=r"^no videos to resample$"):
        bootstrap_weights([], 10, 0)
    run = RunScores("sft", tuple(u), ("d",), (0,), np.ones((1, 2, 1)))
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^confidence level must be in \(0, 1\), got {level}$"):
            run_interval(run, [0], bootstrap_weights(u, 5, 0), u, level=level)
    other = RunScores("b", (("q", 0),), ("d",), (0,), np.ones((1, 1, 1)))
    with pytest.raises(ValueError, match=r"^runs sft and b share no \(prompt, seed\) video: nothing to pair$"):
        paired_replicates(run, other, [0], bootstrap_weights(u, 5, 0), u)


def test_a_missing_video_is_named():
    from evaluation.statistics import _columns

    run = RunScores("sft", (("p00", 0),), ("d",), (0,), np.ones((1, 1, 1)))
    with pytest.raises(ValueError, match=r"^run sft: no score for video p01_s0 \(2 missing\)$"):
        _columns(run, [("p00", 0), ("p01", 0), ("p02", 1)])
    assert _columns(run, [("p00", 0)]).tolist() == [0]


def test_one_replicate_one_video_and_the_video_scheme():
    u = units(3, 2)
    assert bootstrap_weights(u, 1, 0).shape == (1, 6)  # n_boot = 1 is valid
    assert bootstrap_weights([("p", 0)], 4, 0).tolist() == [[1.0]] * 4  # one video: always drawn once
    w = bootstrap_weights(u, 400, 0, scheme="video")
    assert w.dtype == np.float64 and (w.sum(1) == 6).all()
    assert (w.reshape(400, 3, 2)[:, :, 0] != w.reshape(400, 3, 2)[:, :, 1]).any()  # seeds drawn apart
    # videos drawn one by one: a prompt's two seeds are not drawn in whole prompt draws (prompt_seed's sums are even)
    assert (w.reshape(400, 3, 2).sum(-1) % 2 == 1).any()
    assert (bootstrap_weights(u, 400, 0, scheme="prompt_seed").reshape(400, 3, 2).sum(-1) % 2 == 0).all()


def test_seed_spread_without_any_score():
    run = RunScores("x", (("p", 0),), ("d",), (0, 1), np.full((2, 1, 1), np.nan))
    assert seed_spread(run, [0]) == {"per_seed": {"0": None, "1": None}, "std": None, "min": None, "max": None}


def test_metric_value_edges():
    vals = np.array([[[4.0], [np.nan], [np.nan]]])  # one score on one video: its mean is that score
    assert metric_value(vals, [0]).shape == (1,) and metric_value(vals, [0])[0] == 4.0
    two_seeds = np.array([[[3.0], [5.0]], [[np.nan], [np.nan]]])  # the second training seed has no score
    assert np.isnan(metric_value(two_seeds, [0])[0])


def test_intervals_at_their_edges():
    u = units(4, 1)
    nan_run = RunScores("r", tuple(u), ("d",), (0,), np.full((1, 4, 1), np.nan))
    assert run_interval(nan_run, [0], bootstrap_weights(u, 10, 0), u) == Interval(None, None, None)
    pair = PairedReplicates(0.5, np.array([np.nan, np.nan]), 4)
    assert pair.interval() == Interval(0.5, None, None)  # an estimate without replicates
    reps = PairedReplicates(0.0, np.arange(101.0), 4)
    assert (reps.interval().lo, reps.interval().hi) == pytest.approx((2.5, 97.5))  # default 95%: 2.5% and 97.5%
    assert (reps.interval(0.5).lo, reps.interval(0.5).hi) == pytest.approx((25.0, 75.0))
    assert PairedReplicates(1.0, np.array([2.0]), 1).interval() == Interval(1.0, 2.0, 2.0)
    assert Interval(1.0, None, 2.0).includes_zero() and Interval(1.0, -1.0, None).includes_zero()
    assert not Interval(1.0, 0.5, 2.0).includes_zero()


def test_paired_replicates_resample_and_count_the_pairs():
    u = units(8, 2)
    a, b = random_run("a", u, n_train=1, seed=1), random_run("b", u, n_train=1, seed=2)
    w = bootstrap_weights(u, 300, seed=0)
    pair = paired_replicates(a, b, TA, w, u)
    assert pair.replicates.shape == (300,) and pair.n_paired == len(u)
    assert pair.replicates.std() > 0  # one value per resample, not the estimate repeated
    iv = pair.interval()
    assert iv.lo < pair.estimate < iv.hi


def test_interval_numbers_are_rounded_for_the_record():
    assert Interval(1.23456789, -0.5, float("inf")).to_dict() == {"estimate": 1.234568, "lo": -0.5, "hi": None}
    assert Interval(None, 1.0, 2.0).to_dict() == {"estimate": None, "lo": 1.0, "hi": 2.0}
    assert half_width(Interval(0.0, 1.0, 2.0000004)) == 0.5 and half_width(Interval(0.0, None, 1.0)) is None
    assert half_width(Interval(0.0, 1.0, None)) is None


def test_bootstrap_p_value_counts_each_side_with_plus_one():
    """p = min(1, 2 min((1 + #{r <= 0}) / (B + 1), (1 + #{r >= 0}) / (B + 1))) (Davison & Hinkley 1997, 4.4)."""
    reps = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, np.nan])  # B = 7 finite; 2 at or below 0, 6 at or above
    assert bootstrap_p_value(PairedReplicates(1.0, reps, 8)) == pytest.approx(2 * 3 / 8)
    assert bootstrap_p_value(PairedReplicates(1.0, np.arange(1.0, 20.0), 8)) == pytest.approx(2 * 1 / 20)
    assert bootstrap_p_value(PairedReplicates(-1.0, -np.arange(1.0, 20.0), 8)) == pytest.approx(2 * 1 / 20)
    assert bootstrap_p_value(PairedReplicates(0.0, np.zeros(9), 8)) == 1.0  # capped
    assert bootstrap_p_value(PairedReplicates(float("nan"), reps, 8)) is None
    assert bootstrap_p_value(PairedReplicates(1.0, np.array([np.nan]), 8)) is None
    assert bootstrap_p_value(PairedReplicates(1.0, np.array([2.0]), 8)) == pytest.approx(2 * 1 / 2)


def test_the_verdict_follows_the_side_of_the_interval_not_the_point_estimate():
    """A percentile interval need not contain its point estimate (a skewed bootstrap): the interval decides."""
    assert verdict(Interval(estimate=-0.01, lo=0.02, hi=0.3)) == "higher"
    assert verdict(Interval(estimate=0.0, lo=0.02, hi=0.3)) == "higher"
    assert verdict(Interval(estimate=None, lo=0.02, hi=0.3)) == "higher"
    assert verdict(Interval(estimate=0.01, lo=-0.3, hi=-0.02)) == "lower"
    assert verdict(Interval(estimate=0.5, lo=0.0, hi=0.3)) == "no difference"


# --------------------------------------------------------------------------------------------------------------
# training seeds as replicates (train_seed_rng): two lab runs of one command differed by more than their intervals
# --------------------------------------------------------------------------------------------------------------


def _two_replicates(shift_first: float, shift_second: float, n_prompts: int = 20) -> tuple[RunScores, RunScores, list]:
    """A base with two training seeds (two replicates of the pipeline) and a run that is the base plus a constant
    shift in each replicate: the paired difference is exactly that shift within a replicate."""
    u = units(n_prompts, 1)
    base = random_run("base", u, n_train=2, seed=3)
    vals = base.values.copy()
    vals[0] += shift_first
    vals[1] += shift_second
    return RunScores("sara-or", base.units, base.dims, base.train_seeds, vals), base, u


def test_a_difference_that_flips_between_replicates_is_no_difference_once_they_are_resampled():
    """+0.3 in one replicate, -0.1 in the other: with the replicates held fixed the interval is exactly +0.1 and
    excludes zero (the old reading: "holds"); resampling them puts both replicates' differences in the interval."""
    a, b, u = _two_replicates(0.3, -0.1)
    w = bootstrap_weights(u, 2000, seed=0)
    fixed, _ = paired_difference(a, b, TA, w, u)
    assert fixed.lo == pytest.approx(0.1) and fixed.hi == pytest.approx(0.1)
    iv, n = paired_difference(a, b, TA, w, u, train_seed_rng=0)
    assert iv.estimate == pytest.approx(0.1) and n == len(u)
    assert iv.lo == pytest.approx(-0.1) and iv.hi == pytest.approx(0.3)
    assert verdict(iv) == "no difference"
    pair = paired_replicates(a, b, TA, w, u, train_seed_rng=0)
    assert bootstrap_p_value(pair) > 0.05


def test_runs_with_the_same_replicates_are_resampled_together():
    """The same shift in both replicates: resampled jointly (one draw for runs with the same training seeds), the
    base's own replicate-to-replicate spread cancels and the difference stays exactly the shift."""
    a, b, u = _two_replicates(0.2, 0.2)
    iv, _ = paired_difference(a, b, TA, bootstrap_weights(u, 500, seed=1), u, train_seed_rng=7)
    assert iv.lo == pytest.approx(0.2) and iv.hi == pytest.approx(0.2)


def test_a_run_with_one_training_seed_is_unchanged_by_replicate_resampling():
    u = units(8, 2)
    run = random_run("sft", u, n_train=1, seed=4)
    w = bootstrap_weights(u, 300, seed=2)
    assert run_interval(run, TA, w, u, train_seed_rng=5) == run_interval(run, TA, w, u)


def test_replicate_resampling_widens_a_run_interval_by_the_replicate_spread():
    """One run, two replicates 1.0 apart on every score: its interval holds both replicates' values; held fixed, it
    holds neither (it is their mean's)."""
    u = units(10, 1)
    run = random_run("sara-or", u, n_train=1, seed=6)
    two = RunScores("sara-or", run.units, run.dims, (0, 1), np.concatenate([run.values, run.values + 1.0]))
    w = bootstrap_weights(u, 2000, seed=0)
    fixed = run_interval(two, TA, w, u)
    resampled = run_interval(two, TA, w, u, train_seed_rng=0)
    assert resampled.estimate == fixed.estimate
    first, second = (run_interval(one, TA, w, u).estimate for one in (run, RunScores("sara-or", run.units, run.dims, (1,), run.values + 1.0)))
    assert resampled.lo < first < second < resampled.hi
    assert not fixed.lo < first and not second < fixed.hi
