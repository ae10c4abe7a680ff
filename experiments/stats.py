"""The experiment statistics engine: plain Python and scipy, no Django.

Everything works from per-variant sufficient statistics (``VariantStats``): the number of
units (profiles) and the sums, sums of squares and cross sums of one or two per-unit
columns. The second column is the denominator of a ratio metric, or the pre-exposure value
of the metric for CUPED. The results are about the *relative* lift of a treatment over the
control, ``mean_t / mean_c - 1``, whose variance comes from the delta method.

References:
- Welch t-test, delta method for a ratio of means: Deng, Knoblich & Lu (2018), "Applying
  the Delta Method in Metric Analytics".
- CUPED: Deng, Xu, Kohavi & Walker (2013).
- Always-valid confidence sequences: Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-
  uniform, nonparametric, nonasymptotic confidence sequences", the two-sided normal mixture
  boundary (their eq. 14).
- Holm (1979); Benjamini & Hochberg (1995).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as sps

DEFAULT_ALPHA = 0.05
SRM_ALERT_P = 0.001
# The confidence sequence is tightest around this many units (both arms together).
DEFAULT_SEQUENTIAL_TUNING_N = 5000


class StatsError(ValueError):
    """Input the engine cannot analyse (a message for people, not a stack trace)."""


@dataclass(frozen=True)
class VariantStats:
    """Sufficient statistics of one variant for one metric.

    ``sum``/``sum_sq`` are over the per-unit metric value x. For a ratio metric (x / y) or
    CUPED (x adjusted by the pre-exposure value y) the ``y`` columns are also needed.
    """

    n: int
    sum: float
    sum_sq: float
    sum_y: float | None = None
    sum_y_sq: float | None = None
    sum_xy: float | None = None

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def var(self) -> float:
        """Sample variance of x (ddof=1)."""
        if self.n < 2:
            return 0.0
        return max((self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1), 0.0)

    @property
    def has_y(self) -> bool:
        return self.sum_y is not None and self.sum_y_sq is not None and self.sum_xy is not None

    @property
    def mean_y(self) -> float:
        return (self.sum_y or 0.0) / self.n if self.n else 0.0

    @property
    def var_y(self) -> float:
        if self.n < 2 or not self.has_y:
            return 0.0
        return max((self.sum_y_sq - self.sum_y * self.sum_y / self.n) / (self.n - 1), 0.0)

    @property
    def cov_xy(self) -> float:
        if self.n < 2 or not self.has_y:
            return 0.0
        return (self.sum_xy - self.sum * self.sum_y / self.n) / (self.n - 1)

    @classmethod
    def from_values(cls, x: Sequence[float], y: Sequence[float] | None = None) -> VariantStats:
        """Sufficient statistics of raw per-unit values (tests, simulations, small data)."""
        xs = np.asarray(x, dtype=float)
        if y is None:
            return cls(n=len(xs), sum=float(xs.sum()), sum_sq=float((xs * xs).sum()))
        ys = np.asarray(y, dtype=float)
        return cls(
            n=len(xs),
            sum=float(xs.sum()),
            sum_sq=float((xs * xs).sum()),
            sum_y=float(ys.sum()),
            sum_y_sq=float((ys * ys).sum()),
            sum_xy=float((xs * ys).sum()),
        )

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Estimate:
    """A point estimate of a variant's metric and the variance of that estimate."""

    value: float
    variance: float
    n: int


def mean_estimate(s: VariantStats) -> Estimate:
    return Estimate(value=s.mean, variance=s.var / s.n if s.n else math.inf, n=s.n)


def ratio_estimate(s: VariantStats) -> Estimate:
    """sum(x) / sum(y) with its delta-method variance (units are independent, not events)."""
    if not s.has_y:
        raise StatsError("A ratio metric needs sum_y, sum_y_sq and sum_xy.")
    mx, my = s.mean, s.mean_y
    if s.n == 0 or my == 0:
        return Estimate(value=0.0, variance=math.inf, n=s.n)
    ratio = mx / my
    variance = (s.var / my**2 - 2 * mx * s.cov_xy / my**3 + mx**2 * s.var_y / my**4) / s.n
    return Estimate(value=ratio, variance=max(variance, 0.0), n=s.n)


def cuped_theta(variants: Sequence[VariantStats]) -> float:
    """The CUPED coefficient cov(x, y) / var(y), pooled over all variants."""
    n = sum(v.n for v in variants)
    if n < 2 or not all(v.has_y for v in variants):
        return 0.0
    sx = sum(v.sum for v in variants)
    sy = sum(v.sum_y for v in variants)
    syy = sum(v.sum_y_sq for v in variants)
    sxy = sum(v.sum_xy for v in variants)
    var_y = (syy - sy * sy / n) / (n - 1)
    if var_y <= 0:
        return 0.0
    return ((sxy - sx * sy / n) / (n - 1)) / var_y


def cuped_estimate(s: VariantStats, *, theta: float, pooled_mean_y: float) -> Estimate:
    """The mean of x - theta * (y - E[y]); with theta pooled, the adjustment is unbiased."""
    if not s.has_y:
        raise StatsError("CUPED needs the pre-exposure sums (sum_y, sum_y_sq, sum_xy).")
    value = s.mean - theta * (s.mean_y - pooled_mean_y)
    var = s.var - 2 * theta * s.cov_xy + theta**2 * s.var_y
    return Estimate(value=value, variance=max(var, 0.0) / s.n if s.n else math.inf, n=s.n)


@dataclass(frozen=True)
class Frequentist:
    lift: float
    se: float
    df: float
    t: float
    p_value: float
    ci_low: float
    ci_high: float
    significant: bool


@dataclass(frozen=True)
class Bayesian:
    lift_mean: float
    lift_sd: float
    chance_to_win: float
    ci_low: float
    ci_high: float
    risk_treatment: float  # expected relative loss if we ship the treatment and it is worse
    risk_control: float  # expected relative loss if we keep the control and the treatment is better


@dataclass(frozen=True)
class Sequential:
    ci_low: float
    ci_high: float
    significant: bool
    tuning_rho: float


def _relative(t: Estimate, c: Estimate) -> tuple[float, float, float]:
    """Relative lift, its delta-method standard error and Welch-Satterthwaite degrees of freedom."""
    if c.value == 0:
        raise StatsError("The control's mean is 0: a relative lift is undefined.")
    lift = t.value / c.value - 1
    a = t.variance / c.value**2
    b = t.value**2 * c.variance / c.value**4
    var = a + b
    denom = (a * a / (t.n - 1) if t.n > 1 else 0) + (b * b / (c.n - 1) if c.n > 1 else 0)
    df = var * var / denom if denom > 0 else float(max(t.n + c.n - 2, 1))
    return lift, math.sqrt(var), df


def _absolute(t: Estimate, c: Estimate) -> tuple[float, float, float]:
    diff = t.value - c.value
    a, b = t.variance, c.variance
    var = a + b
    denom = (a * a / (t.n - 1) if t.n > 1 else 0) + (b * b / (c.n - 1) if c.n > 1 else 0)
    df = var * var / denom if denom > 0 else float(max(t.n + c.n - 2, 1))
    return diff, math.sqrt(var), df


def welch_test(
    t: Estimate,
    c: Estimate,
    *,
    alpha: float = DEFAULT_ALPHA,
    alternative: str = "two-sided",
    relative: bool = True,
) -> Frequentist:
    """Welch t-test of the treatment against the control, on the relative (default) or absolute scale.

    ``alternative`` is "two-sided", "greater" (the treatment raises the metric) or "less".
    One-sided intervals are open on one side (an infinite bound).
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise StatsError(f"Unknown alternative {alternative!r}.")
    if t.n < 2 or c.n < 2:
        raise StatsError("Each variant needs at least two units.")
    effect, se, df = (_relative if relative else _absolute)(t, c)
    if se == 0:
        raise StatsError("The metric does not vary: there is nothing to test.")
    tstat = effect / se
    # scipy's functions, not a frozen distribution: this runs thousands of times in simulations.
    if alternative == "two-sided":
        p = 2 * sps.t.sf(abs(tstat), df)
        q = sps.t.ppf(1 - alpha / 2, df)
        low, high = effect - q * se, effect + q * se
    elif alternative == "greater":
        p = sps.t.sf(tstat, df)
        low, high = effect - sps.t.ppf(1 - alpha, df) * se, math.inf
    else:
        p = sps.t.cdf(tstat, df)
        low, high = -math.inf, effect + sps.t.ppf(1 - alpha, df) * se
    return Frequentist(
        lift=effect,
        se=se,
        df=df,
        t=tstat,
        p_value=float(p),
        ci_low=float(low),
        ci_high=float(high),
        significant=bool(p < alpha),
    )


def bayesian_lift(
    t: Estimate,
    c: Estimate,
    *,
    alpha: float = DEFAULT_ALPHA,
    prior_mean: float = 0.0,
    prior_variance: float | None = None,
) -> Bayesian:
    """Gaussian posterior of the relative lift (flat prior unless ``prior_variance`` is given).

    Chance to win is P(lift > 0). Risk is the expected loss E[max(0, -lift)] of shipping the
    treatment, and E[max(0, lift)] of keeping the control, both in relative terms.
    """
    lift, se, _ = _relative(t, c)
    if se == 0:
        raise StatsError("The metric does not vary: there is nothing to estimate.")
    mean, var = lift, se * se
    if prior_variance:
        precision = 1 / var + 1 / prior_variance
        mean = (lift / var + prior_mean / prior_variance) / precision
        var = 1 / precision
    sd = math.sqrt(var)
    z = mean / sd
    pdf, cdf = sps.norm.pdf(z), sps.norm.cdf(z)
    q = sps.norm.ppf(1 - alpha / 2)
    return Bayesian(
        lift_mean=mean,
        lift_sd=sd,
        chance_to_win=float(cdf),
        ci_low=mean - q * sd,
        ci_high=mean + q * sd,
        risk_treatment=float(sd * pdf - mean * (1 - cdf)),
        risk_control=float(sd * pdf + mean * cdf),
    )


def sequential_rho(*, tuning_n: int = DEFAULT_SEQUENTIAL_TUNING_N, alpha: float = DEFAULT_ALPHA) -> float:
    """The mixture parameter that makes the confidence sequence tightest near ``tuning_n`` units.

    Howard et al. (2021), eq. (15) approximation for the two-sided normal mixture.
    """
    log_term = 2 * math.log(1 / alpha) + math.log(1 + 2 * math.log(1 / alpha))
    return tuning_n / log_term


def sequential_halfwidth(*, se: float, n: int, alpha: float = DEFAULT_ALPHA, rho: float) -> float:
    """Half-width of the always-valid interval for an estimate with standard error ``se`` from ``n`` units.

    With per-unit standard deviation sigma = se * sqrt(n), the boundary on the sum of n units is
    sigma * sqrt((n + rho) * log((n + rho) / (rho * alpha^2))); divided by n for the mean.
    """
    if n <= 0:
        return math.inf
    return se * math.sqrt((n + rho) / n * math.log((n + rho) / (rho * alpha * alpha)))


def sequential_test(
    t: Estimate,
    c: Estimate,
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning_n: int = DEFAULT_SEQUENTIAL_TUNING_N,
    relative: bool = True,
) -> Sequential:
    effect, se, _ = (_relative if relative else _absolute)(t, c)
    rho = sequential_rho(tuning_n=tuning_n, alpha=alpha)
    half = sequential_halfwidth(se=se, n=t.n + c.n, alpha=alpha, rho=rho)
    low, high = effect - half, effect + half
    return Sequential(ci_low=low, ci_high=high, significant=bool(low > 0 or high < 0), tuning_rho=rho)


@dataclass(frozen=True)
class SrmCheck:
    chi2: float
    p_value: float
    alert: bool
    observed: list[int]
    expected: list[float]


def srm_check(
    observed: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_ALERT_P
) -> SrmCheck:
    """Sample-ratio mismatch: Pearson chi-square of the observed counts against the configured weights."""
    if len(observed) != len(weights) or len(observed) < 2:
        raise StatsError("SRM needs one weight per variant and at least two variants.")
    total = float(sum(observed))
    wsum = float(sum(weights))
    if total == 0 or wsum <= 0:
        return SrmCheck(
            chi2=0.0, p_value=1.0, alert=False, observed=list(observed), expected=[0.0] * len(weights)
        )
    expected = [total * w / wsum for w in weights]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    df = sum(1 for e in expected if e > 0) - 1
    p = float(sps.chi2.sf(chi2, df)) if df > 0 else 1.0
    return SrmCheck(chi2=chi2, p_value=p, alert=p < threshold, observed=list(observed), expected=expected)


def adjust_p_values(p_values: Sequence[float], *, method: str) -> list[float]:
    """Family-wise (``holm``) or false-discovery-rate (``bh``) adjusted p-values, in input order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        scaled = m / np.arange(1, m + 1) * ranked
        adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    elif method == "none":
        adjusted = ranked
    else:
        raise StatsError(f"Unknown correction {method!r}: use holm, bh or none.")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


# --- Planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerPlan:
    baseline_mean: float
    baseline_sd: float
    alpha: float
    power: float
    n_per_variant: int
    mde: float  # relative


def _z(alpha: float, power: float, two_sided: bool) -> float:
    za = sps.norm.ppf(1 - alpha / 2) if two_sided else sps.norm.ppf(1 - alpha)
    return za + sps.norm.ppf(power)


def sample_size(
    *,
    baseline_mean: float,
    baseline_sd: float,
    mde: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = 0.8,
    two_sided: bool = True,
) -> int:
    """Units per variant (equal split) to detect a relative lift ``mde`` (normal approximation)."""
    if mde == 0 or baseline_mean == 0:
        raise StatsError("The minimum detectable effect and the baseline mean must not be 0.")
    delta = abs(mde * baseline_mean)
    return math.ceil(2 * (_z(alpha, power, two_sided) * baseline_sd / delta) ** 2)


def minimum_detectable_effect(
    *,
    baseline_mean: float,
    baseline_sd: float,
    n_per_variant: int,
    alpha: float = DEFAULT_ALPHA,
    power: float = 0.8,
    two_sided: bool = True,
) -> float:
    """The smallest relative lift detectable with ``n_per_variant`` units per arm."""
    if n_per_variant < 2 or baseline_mean == 0:
        raise StatsError("Need at least two units per variant and a non-zero baseline.")
    return _z(alpha, power, two_sided) * baseline_sd * math.sqrt(2 / n_per_variant) / abs(baseline_mean)


def achieved_power(
    *,
    baseline_mean: float,
    baseline_sd: float,
    n_per_variant: int,
    mde: float,
    alpha: float = DEFAULT_ALPHA,
) -> float:
    """Power of a two-sided test to detect the relative lift ``mde``."""
    if n_per_variant < 2 or baseline_sd <= 0:
        return 0.0
    za = sps.norm.ppf(1 - alpha / 2)
    shift = abs(mde * baseline_mean) / (baseline_sd * math.sqrt(2 / n_per_variant))
    return float(sps.norm.sf(za - shift) + sps.norm.cdf(-za - shift))


def conversion_sd(rate: float) -> float:
    return math.sqrt(max(rate * (1 - rate), 0.0))


# --- One metric, all variants -------------------------------------------------------------------


@dataclass
class VariantResult:
    key: str
    n: int
    mean: float
    stats: dict
    frequentist: Frequentist | None = None
    bayesian: Bayesian | None = None
    sequential: Sequential | None = None
    p_adjusted: float | None = None
    error: str | None = None


@dataclass
class MetricResult:
    metric: str
    kind: str  # mean | ratio
    cuped: bool
    variants: list[VariantResult] = field(default_factory=list)
    theta: float | None = None


def metric_analyze(
    *,
    metric: str,
    variants: Sequence[tuple[str, VariantStats]],
    kind: str = "mean",
    cuped: bool = False,
    alpha: float = DEFAULT_ALPHA,
    alternative: str = "two-sided",
    tuning_n: int = DEFAULT_SEQUENTIAL_TUNING_N,
    prior_variance: float | None = None,
) -> MetricResult:
    """Analyse one metric: the first variant is the control, each other is compared with it."""
    if len(variants) < 2:
        raise StatsError("An analysis needs a control and at least one treatment.")
    if kind not in ("mean", "ratio"):
        raise StatsError(f"Unknown metric kind {kind!r}.")
    stats_only = [s for _, s in variants]
    theta = None
    if kind == "ratio":
        estimates = [ratio_estimate(s) for s in stats_only]
    elif cuped and all(s.has_y for s in stats_only):
        theta = cuped_theta(stats_only)
        n = sum(s.n for s in stats_only)
        pooled_mean_y = sum(s.sum_y for s in stats_only) / n if n else 0.0
        estimates = [cuped_estimate(s, theta=theta, pooled_mean_y=pooled_mean_y) for s in stats_only]
    else:
        cuped = False
        estimates = [mean_estimate(s) for s in stats_only]
    result = MetricResult(metric=metric, kind=kind, cuped=cuped, theta=theta)
    control = estimates[0]
    for index, ((key, s), est) in enumerate(zip(variants, estimates, strict=True)):
        row = VariantResult(key=key, n=s.n, mean=est.value, stats=s.to_dict())
        if index > 0:
            try:
                row.frequentist = welch_test(est, control, alpha=alpha, alternative=alternative)
                row.bayesian = bayesian_lift(est, control, alpha=alpha, prior_variance=prior_variance)
                row.sequential = sequential_test(est, control, alpha=alpha, tuning_n=tuning_n)
            except StatsError as exc:
                row.error = str(exc)
        result.variants.append(row)
    return result


def results_adjust(results: Sequence[MetricResult], *, method: str) -> None:
    """Fill ``p_adjusted`` across every (metric, treatment) comparison of an analysis."""
    cells = [v for r in results for v in r.variants if v.frequentist is not None]
    adjusted = adjust_p_values([v.frequentist.p_value for v in cells], method=method)
    for cell, p in zip(cells, adjusted, strict=True):
        cell.p_adjusted = p


def _finite(value):
    """JSON has no infinities: one-sided bounds become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_to_dict(result: MetricResult) -> dict:
    def clean(obj):
        if obj is None:
            return None
        return {k: _finite(v) for k, v in asdict(obj).items()}

    return {
        "metric": result.metric,
        "kind": result.kind,
        "cuped": result.cuped,
        "theta": result.theta,
        "variants": [
            {
                "key": v.key,
                "n": v.n,
                "mean": v.mean,
                "stats": v.stats,
                "frequentist": clean(v.frequentist),
                "bayesian": clean(v.bayesian),
                "sequential": clean(v.sequential),
                "p_adjusted": v.p_adjusted,
                "error": v.error,
            }
            for v in result.variants
        ],
    }


# --- A whole analysis from a JSON-ready summary -------------------------------------------------

SUMMARY_KEYS = {"n", "sum", "sum_sq", "sum_y", "sum_y_sq", "sum_xy"}


def _variant_stats(raw: dict, where: str) -> VariantStats:
    if not isinstance(raw, dict) or "key" not in raw:
        raise StatsError(f"{where}: each variant needs a key and its sums.")
    missing = {"n", "sum", "sum_sq"} - set(raw)
    if missing:
        raise StatsError(f"{where}: missing {', '.join(sorted(missing))}.")
    try:
        values = {k: (int(v) if k == "n" else float(v)) for k, v in raw.items() if k in SUMMARY_KEYS}
    except (TypeError, ValueError):
        raise StatsError(f"{where}: sums must be numbers.") from None
    if values["n"] < 0:
        raise StatsError(f"{where}: n must not be negative.")
    return VariantStats(**values)


def summary_analyze(summary: dict) -> dict:
    """Analyse per-variant sufficient statistics given as a JSON-ready dict (see docs/experiments.md).

    The first variant of every metric is the control. Returns SRM, every metric's results and
    p-values adjusted across all (metric, treatment) comparisons.
    """
    if (
        not isinstance(summary, dict)
        or not isinstance(summary.get("metrics"), list)
        or not summary["metrics"]
    ):
        raise StatsError("The summary needs a non-empty 'metrics' list.")
    alpha = float(summary.get("alpha", DEFAULT_ALPHA))
    if not 0 < alpha < 0.5:
        raise StatsError("alpha must be between 0 and 0.5.")
    correction = summary.get("correction", "holm")
    alternative = summary.get("alternative", "two-sided")
    tuning_n = int(summary.get("sequential_tuning_n", DEFAULT_SEQUENTIAL_TUNING_N))
    results = []
    for i, raw in enumerate(summary["metrics"]):
        where = f"metrics[{i}]"
        variants = raw.get("variants") if isinstance(raw, dict) else None
        if not isinstance(variants, list) or len(variants) < 2:
            raise StatsError(f"{where}: needs at least two variants (the first is the control).")
        parsed = [
            (str(v.get("key")), _variant_stats(v, f"{where}.variants[{j}]")) for j, v in enumerate(variants)
        ]
        results.append(
            metric_analyze(
                metric=str(raw.get("name") or raw.get("key") or f"metric {i + 1}"),
                variants=parsed,
                kind=raw.get("kind", "mean"),
                cuped=bool(raw.get("cuped", False)),
                alpha=alpha,
                alternative=alternative,
                tuning_n=tuning_n,
            )
        )
    results_adjust(results, method=correction)
    counts = [v.n for v in results[0].variants]
    weights = summary.get("weights") or [1.0] * len(counts)
    srm = srm_check(counts, weights)
    metrics_out = []
    for raw, result in zip(summary["metrics"], results, strict=True):
        data = result_to_dict(result)
        data["key"] = raw.get("key", data["metric"])
        data["name"] = raw.get("name", data["key"])
        data["higher_is_better"] = bool(raw.get("higher_is_better", True))
        metrics_out.append(data)
    return {
        "alpha": alpha,
        "correction": correction,
        "alternative": alternative,
        "sequential_tuning_n": tuning_n,
        "srm": asdict(srm),
        "metrics": metrics_out,
    }
