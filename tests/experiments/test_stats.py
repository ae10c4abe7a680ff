"""The statistics engine, checked against scipy, statsmodels and brute-force simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from experiments import stats
from experiments.stats import VariantStats

statsmodels_multitest = pytest.importorskip("statsmodels.stats.multitest")
statsmodels_power = pytest.importorskip("statsmodels.stats.power")


def _samples(seed=1, n_c=400, n_t=450):
    rng = np.random.default_rng(seed)
    return rng.normal(10, 3, n_c), rng.normal(10.6, 4, n_t)


def test_sufficient_statistics_give_the_sample_mean_and_variance():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    s = VariantStats.from_values(x)
    assert s.mean == pytest.approx(x.mean())
    assert s.var == pytest.approx(x.var(ddof=1))


def test_the_absolute_welch_test_matches_scipy_ttest_ind_from_stats():
    c, t = _samples()
    est_c = stats.mean_estimate(VariantStats.from_values(c))
    est_t = stats.mean_estimate(VariantStats.from_values(t))
    ours = stats.welch_test(est_t, est_c, relative=False)
    ref = sps.ttest_ind_from_stats(
        t.mean(), t.std(ddof=1), len(t), c.mean(), c.std(ddof=1), len(c), equal_var=False
    )
    assert ours.t == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    # And the interval is scipy's Welch interval for the difference of means.
    ref_ci = sps.ttest_ind(t, c, equal_var=False).confidence_interval(0.95)
    assert ours.ci_low == pytest.approx(ref_ci.low, rel=1e-8)
    assert ours.ci_high == pytest.approx(ref_ci.high, rel=1e-8)


def test_one_sided_tests_match_scipy_and_halve_the_two_sided_p_value():
    c, t = _samples(seed=2)
    est_c = stats.mean_estimate(VariantStats.from_values(c))
    est_t = stats.mean_estimate(VariantStats.from_values(t))
    greater = stats.welch_test(est_t, est_c, relative=False, alternative="greater")
    ref = sps.ttest_ind(t, c, equal_var=False, alternative="greater")
    assert greater.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert greater.ci_high == math.inf
    assert greater.ci_low == pytest.approx(ref.confidence_interval(0.95).low, rel=1e-8)
    less = stats.welch_test(est_t, est_c, relative=False, alternative="less")
    assert less.p_value == pytest.approx(1 - greater.p_value, rel=1e-8)


def test_the_relative_lift_variance_is_the_delta_method_variance():
    c, t = _samples(seed=3)
    est_c = stats.mean_estimate(VariantStats.from_values(c))
    est_t = stats.mean_estimate(VariantStats.from_values(t))
    result = stats.welch_test(est_t, est_c)
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    # Gradient of g(mt, mc) = mt / mc - 1 is (1 / mc, -mt / mc^2).
    assert result.lift == pytest.approx(mt / mc - 1)
    assert result.se**2 == pytest.approx(vt / mc**2 + mt**2 * vc / mc**4)


def test_relative_confidence_intervals_cover_the_true_lift_about_95_percent_of_the_time():
    rng = np.random.default_rng(42)
    reps, n = 2000, 300
    true_lift = 0.05
    c = rng.exponential(2.0, (reps, n))
    t = rng.exponential(2.0 * (1 + true_lift), (reps, n))
    covered = 0
    for i in range(reps):
        r = stats.welch_test(
            stats.mean_estimate(VariantStats.from_values(t[i])),
            stats.mean_estimate(VariantStats.from_values(c[i])),
        )
        covered += r.ci_low <= true_lift <= r.ci_high
    # 95% +- 3 binomial standard errors (sqrt(.95 * .05 / 2000) = 0.0049).
    assert abs(covered / reps - 0.95) < 0.015


def test_aa_tests_reject_about_alpha_of_the_time():
    rng = np.random.default_rng(7)
    reps, n = 2000, 200
    data = rng.binomial(1, 0.3, (reps, 2, n)).astype(float)
    rejections = 0
    for i in range(reps):
        r = stats.welch_test(
            stats.mean_estimate(VariantStats.from_values(data[i, 1])),
            stats.mean_estimate(VariantStats.from_values(data[i, 0])),
        )
        rejections += r.significant
    assert abs(rejections / reps - 0.05) < 0.015


def test_the_bayesian_chance_to_win_and_risk_match_numerical_integration():
    c, t = _samples(seed=4)
    est_c = stats.mean_estimate(VariantStats.from_values(c))
    est_t = stats.mean_estimate(VariantStats.from_values(t))
    b = stats.bayesian_lift(est_t, est_c)
    freq = stats.welch_test(est_t, est_c)
    posterior = sps.norm(freq.lift, freq.se)
    assert b.chance_to_win == pytest.approx(posterior.sf(0))
    loss_ship, _ = integrate.quad(lambda x: -x * posterior.pdf(x), -np.inf, 0)
    loss_keep, _ = integrate.quad(lambda x: x * posterior.pdf(x), 0, np.inf)
    assert b.risk_treatment == pytest.approx(loss_ship, rel=1e-6)
    assert b.risk_control == pytest.approx(loss_keep, rel=1e-6)
    assert (b.ci_low, b.ci_high) == pytest.approx(posterior.interval(0.95))


def test_an_informative_prior_shrinks_the_lift_towards_zero():
    c, t = _samples(seed=5, n_c=50, n_t=50)
    est_c = stats.mean_estimate(VariantStats.from_values(c))
    est_t = stats.mean_estimate(VariantStats.from_values(t))
    flat = stats.bayesian_lift(est_t, est_c)
    shrunk = stats.bayesian_lift(est_t, est_c, prior_variance=0.01**2)
    assert abs(shrunk.lift_mean) < abs(flat.lift_mean)
    assert shrunk.lift_sd < flat.lift_sd


def test_the_ratio_metric_variance_matches_the_delta_method_on_raw_data():
    rng = np.random.default_rng(8)
    impressions = rng.poisson(20, 500) + 1
    clicks = rng.binomial(impressions, 0.1)
    est = stats.ratio_estimate(VariantStats.from_values(clicks, impressions))
    assert est.value == pytest.approx(clicks.sum() / impressions.sum())
    # Linearisation: the variance of mean(x - r * y) / mean(y).
    residual = clicks - est.value * impressions
    expected = residual.var(ddof=1) / len(clicks) / impressions.mean() ** 2
    assert est.variance == pytest.approx(expected, rel=1e-9)


def test_cuped_matches_a_welch_test_on_the_adjusted_raw_values():
    rng = np.random.default_rng(9)
    pre_c, pre_t = rng.normal(5, 2, 600), rng.normal(5, 2, 650)
    post_c = 0.8 * pre_c + rng.normal(0, 1, 600)
    post_t = 0.8 * pre_t + rng.normal(0.2, 1, 650)
    sc = VariantStats.from_values(post_c, pre_c)
    st = VariantStats.from_values(post_t, pre_t)
    result = stats.metric_analyze(metric="m", variants=[("c", sc), ("t", st)], cuped=True)
    all_pre = np.concatenate([pre_c, pre_t])
    all_post = np.concatenate([post_c, post_t])
    theta = np.cov(all_post, all_pre, ddof=1)[0, 1] / all_pre.var(ddof=1)
    assert result.theta == pytest.approx(theta)
    adj_c = post_c - theta * (pre_c - all_pre.mean())
    adj_t = post_t - theta * (pre_t - all_pre.mean())
    assert result.variants[1].mean == pytest.approx(adj_t.mean())
    absolute = stats.welch_test(
        stats.cuped_estimate(st, theta=theta, pooled_mean_y=all_pre.mean()),
        stats.cuped_estimate(sc, theta=theta, pooled_mean_y=all_pre.mean()),
        relative=False,
    )
    ref = sps.ttest_ind(adj_t, adj_c, equal_var=False)
    assert absolute.t == pytest.approx(ref.statistic, rel=1e-9)
    # The interval is narrower than without CUPED.
    plain = stats.metric_analyze(metric="m", variants=[("c", sc), ("t", st)])
    assert result.variants[1].frequentist.se < 0.7 * plain.variants[1].frequentist.se


def test_the_srm_check_matches_scipy_chisquare_and_alerts_below_one_in_a_thousand():
    check = stats.srm_check([5000, 5200], [0.5, 0.5])
    ref = sps.chisquare([5000, 5200], [5100, 5100])
    assert check.chi2 == pytest.approx(ref.statistic)
    assert check.p_value == pytest.approx(ref.pvalue)
    assert not check.alert
    skewed = stats.srm_check([1000, 2100, 900], [0.25, 0.5, 0.25])
    ref = sps.chisquare([1000, 2100, 900], [1000, 2000, 1000])
    assert skewed.p_value == pytest.approx(ref.pvalue)
    assert stats.srm_check([5000, 5400], [0.5, 0.5]).alert


@pytest.mark.parametrize("method, reference", [("holm", "holm"), ("bh", "fdr_bh")])
def test_p_value_corrections_match_statsmodels_multipletests(method, reference):
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.9]
    expected = statsmodels_multitest.multipletests(p, method=reference)[1]
    assert stats.adjust_p_values(p, method=method) == pytest.approx(list(expected))


def test_sample_size_and_mde_match_statsmodels_normal_power():
    mean, sd = 0.2, stats.conversion_sd(0.2)
    n = stats.sample_size(baseline_mean=mean, baseline_sd=sd, mde=0.05)
    reference = statsmodels_power.NormalIndPower().solve_power(
        effect_size=0.05 * mean / sd, alpha=0.05, power=0.8, ratio=1.0
    )
    assert n == pytest.approx(reference, rel=1e-3)
    mde = stats.minimum_detectable_effect(baseline_mean=mean, baseline_sd=sd, n_per_variant=n)
    assert mde == pytest.approx(0.05, rel=1e-3)
    power = stats.achieved_power(baseline_mean=mean, baseline_sd=sd, n_per_variant=n, mde=0.05)
    ref_power = statsmodels_power.NormalIndPower().power(effect_size=0.05 * mean / sd, nobs1=n, alpha=0.05)
    assert power == pytest.approx(ref_power, rel=1e-6)


def test_the_confidence_sequence_keeps_its_error_rate_under_continuous_peeking():
    # 1,000 A/A experiments, each looked at after every 100 units up to 5,000: the fraction
    # that ever exclude 0 stays below alpha for the sequence but not for the fixed interval.
    rng = np.random.default_rng(11)
    reps, looks, step = 1000, 50, 100
    x = rng.normal(0, 1, (reps, looks * step)).cumsum(axis=1)[:, step - 1 :: step]
    n = np.arange(1, looks + 1) * step
    means = x / n
    se = 1 / np.sqrt(n)
    rho = stats.sequential_rho(tuning_n=2000)
    half = np.array([stats.sequential_halfwidth(se=s, n=k, rho=rho) for s, k in zip(se, n, strict=True)])
    sequential_errors = (np.abs(means) > half).any(axis=1).mean()
    fixed_errors = (np.abs(means) > 1.96 * se).any(axis=1).mean()
    assert sequential_errors <= 0.05
    assert fixed_errors > 0.15
    # It is wider than the fixed-horizon interval, but not absurdly so near the tuning size.
    assert 1.96 < stats.sequential_halfwidth(se=1, n=2000, rho=rho) < 3.5


def test_an_analysis_compares_every_treatment_with_the_control():
    c, t = _samples(seed=12)
    rng = np.random.default_rng(13)
    u = rng.normal(10, 3, 420)
    result = stats.metric_analyze(
        metric="watch_time",
        variants=[(k, VariantStats.from_values(v)) for k, v in [("control", c), ("b", t), ("c", u)]],
    )
    stats.results_adjust([result], method="holm")
    assert [v.key for v in result.variants] == ["control", "b", "c"]
    assert result.variants[0].frequentist is None
    assert all(
        v.frequentist is not None and v.p_adjusted >= v.frequentist.p_value for v in result.variants[1:]
    )
    as_dict = stats.result_to_dict(result)
    assert as_dict["variants"][1]["bayesian"]["chance_to_win"] > 0.5


def test_it_refuses_a_relative_lift_over_a_zero_control():
    zero = stats.Estimate(value=0.0, variance=0.0, n=10)
    other = stats.Estimate(value=1.0, variance=0.1, n=10)
    with pytest.raises(stats.StatsError):
        stats.welch_test(other, zero)
