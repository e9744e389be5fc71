"""The book's one statistical rule: Welch's t-test with a 95% CI of the difference, Holm over a
table.

:func:`compare` tests one claim from per-seed values of a treated and a control arm;
:func:`verdicts` applies Holm's step-down correction over the claims of one table and says,
for each claim that is not resolved, the smallest effect the design could have detected
(:func:`detectable_effect`: the difference that Welch's test at the Holm level the claim faced
would find with the stated power).
"The same" is never read from a claim that is not resolved: :func:`equivalence` tests it with two
one-sided tests against a margin stated in advance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from pilcro_lib.utils import check_bool

ALPHA = 0.05
POWER = 0.8
VERDICTS = ("supported", "contradicted", "not resolved", "not measured")


def _values(name: str, values: Iterable[float]) -> np.ndarray:
    try:
        if isinstance(values, (str, bytes)):
            raise TypeError
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a sequence of numbers (one per seed), got {values!r}"
        ) from None
    if np.isinf(array).any():
        raise ValueError(f"{name} holds an infinite value: {array.tolist()}")
    return array[~np.isnan(array)]


def _check_level(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def welch_df(var_t: float, n_t: int, var_c: float, n_c: int) -> float:
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    a, b = var_t / n_t, var_c / n_c
    if a + b == 0:
        return float(n_t + n_c - 2)
    return (a + b) ** 2 / (a**2 / (n_t - 1) + b**2 / (n_c - 1))


def detectable_effect(
    std_error: float, df: float, *, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest true difference that a two-sided Welch test at ``alpha`` finds with
    probability ``power``: ``(t_{1-alpha/2, df} + t_{power, df}) * std_error``."""
    alpha, power = _check_level("alpha", alpha), _check_level("power", power)
    return float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * std_error)


# what compare() returns besides the two arms' sizes
COMPARISON_KEYS = (
    "treated",
    "control",
    "difference",
    "ci_low",
    "ci_high",
    "std_error",
    "df",
    "t",
    "p",
    "detectable",
    "gain",
)


def compare(
    treated: Iterable[float],
    control: Iterable[float],
    *,
    higher_is_better: bool = True,
    alpha: float = ALPHA,
    power: float = POWER,
) -> dict[str, Any]:
    """Welch's t-test of ``mean(treated) - mean(control)`` from per-seed values (NaN = missing).

    Returns ``n_treated``, ``n_control``, ``treated``, ``control`` (means), ``difference``,
    ``ci_low``/``ci_high`` (its ``1 - alpha`` confidence interval), ``std_error``, ``df``,
    ``t``, ``p`` (two-sided), ``detectable`` (see :func:`detectable_effect`) and ``gain``
    (the difference signed so that positive favours the treatment). With fewer than 2 values
    in an arm every statistic is NaN.
    """
    alpha = _check_level("alpha", alpha)
    check_bool("higher_is_better", higher_is_better)
    t, c = _values("treated", treated), _values("control", control)
    out: dict[str, Any] = {"n_treated": len(t), "n_control": len(c)}
    if len(t) < 2 or len(c) < 2:
        return {**out, **dict.fromkeys(COMPARISON_KEYS, math.nan)}
    var_t, var_c = t.var(ddof=1), c.var(ddof=1)
    diff = float(t.mean() - c.mean())
    se = math.sqrt(var_t / len(t) + var_c / len(c))
    df = welch_df(var_t, len(t), var_c, len(c))
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    if se > 0:
        t_stat = diff / se
        p = float(2 * sps.t.sf(abs(t_stat), df))
    else:
        t_stat, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    return {
        **out,
        "treated": float(t.mean()),
        "control": float(c.mean()),
        "difference": diff,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "std_error": se,
        "df": df,
        "t": t_stat,
        "p": p,
        "detectable": detectable_effect(se, df, alpha=alpha, power=power),
        "gain": diff if higher_is_better else -diff,
    }


def equivalence(
    treated: Iterable[float], control: Iterable[float], *, margin: float, alpha: float = ALPHA
) -> dict[str, Any]:
    """Two one-sided Welch tests (TOST) that ``|mean(treated) - mean(control)| < margin``.

    "The same" is a claim too: it holds when both one-sided tests reject at ``alpha``, i.e. when
    the ``1 - 2 alpha`` confidence interval of the difference lies inside ``(-margin, margin)``.
    ``margin`` is stated in the protocol before the results (in the values' units). Returns
    ``difference``, ``eq_low``/``eq_high`` (that interval), ``std_error``, ``df``,
    ``p_equivalence`` (the larger one-sided p-value), ``margin`` and ``equivalent`` (bool); NaN
    statistics and ``False`` with fewer than 2 values in an arm.
    """
    alpha = _check_level("alpha", alpha)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise ValueError(f"margin must be a positive number, got {margin!r}")
    if not math.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin!r}")
    t, c = _values("treated", treated), _values("control", control)
    out: dict[str, Any] = {"n_treated": len(t), "n_control": len(c), "margin": float(margin)}
    if len(t) < 2 or len(c) < 2:
        nan = dict.fromkeys(
            ("difference", "eq_low", "eq_high", "std_error", "df", "p_equivalence"), math.nan
        )
        return {**out, **nan, "equivalent": False}
    var_t, var_c = t.var(ddof=1), c.var(ddof=1)
    diff = float(t.mean() - c.mean())
    se = math.sqrt(var_t / len(t) + var_c / len(c))
    df = welch_df(var_t, len(t), var_c, len(c))
    if se > 0:
        p_lower = float(sps.t.sf((diff + margin) / se, df))  # H0: difference <= -margin
        p_upper = float(sps.t.cdf((diff - margin) / se, df))  # H0: difference >= +margin
    else:
        p_lower = p_upper = 0.0 if abs(diff) < margin else 1.0
    half = float(sps.t.ppf(1 - alpha, df)) * se
    p_equivalence = max(p_lower, p_upper)
    return {
        **out,
        "difference": diff,
        "eq_low": diff - half,
        "eq_high": diff + half,
        "std_error": se,
        "df": df,
        "p_equivalence": p_equivalence,
        "equivalent": bool(p_equivalence < alpha),
    }


def holm(p_values: Sequence[float], *, alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction: adjusted p-values and which hypotheses are rejected at
    ``alpha``.

    NaN p-values (claims not measured) are left out of the family and stay NaN / not rejected.
    """
    alpha = _check_level("alpha", alpha)
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(len(p), np.nan)
    order = _holm_order(p)
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    rejected = [bool(a <= alpha) for a in adjusted]  # NaN <= alpha is False
    return adjusted.tolist(), rejected


def _holm_order(p: np.ndarray) -> np.ndarray:
    """The measured claims' indices, smallest p first (ties in the given order)."""
    measured = np.flatnonzero(~np.isnan(p))
    return measured[np.argsort(p[measured], kind="stable")]


def holm_levels(p_values: Sequence[float], *, alpha: float = ALPHA) -> list[float]:
    """The level at which Holm's procedure tests each claim: ``alpha / (m - rank)`` for the claim
    of the ``rank``-th smallest p-value (0-based) among the ``m`` measured; NaN when not measured.
    A claim's detectable effect is computed at this level, the one its verdict faced."""
    alpha = _check_level("alpha", alpha)
    p = np.asarray(p_values, dtype=np.float64)
    levels = np.full(len(p), np.nan)
    order = _holm_order(p)
    for rank, index in enumerate(order):
        levels[index] = alpha / (len(order) - rank)
    return levels.tolist()


def _holm_family(claims: Mapping[str, dict[str, Any]], p_key: str, alpha: float):
    """Each claim of a family as ``(name, a copy of its result, Holm-adjusted p, rejected, the
    level Holm tested it at)``, Holm's correction running over the results' ``p_key``."""
    names = list(claims)
    p_values = [claims[n][p_key] for n in names]
    adjusted, rejected = holm(p_values, alpha=alpha)
    levels = holm_levels(p_values, alpha=alpha)
    for name, p_holm, reject, level in zip(names, adjusted, rejected, levels):
        yield name, dict(claims[name]), p_holm, reject, level


def verdicts(
    claims: Mapping[str, dict[str, Any]],
    *,
    alpha: float = ALPHA,
    primary: Sequence[str] | None = None,
):
    """The verdict table of one family of claims (:func:`compare` results keyed by claim).

    Adds ``p_holm`` and ``verdict``: ``supported`` / ``contradicted`` when Holm rejects "no
    difference" and the gain favours / opposes the treatment, ``not resolved`` otherwise,
    ``not measured`` without data.
    ``detectable`` is recomputed at the level Holm's procedure tested the claim at
    (:func:`holm_levels`; from the claim's ``std_error`` and ``df``): the smallest difference that
    the corrected test could have found with the stated power.
    ``primary``: the claims named in the protocol as primary endpoints (one per claim of a
    paper); Holm's correction then runs over them alone, and separately over the others, and a
    ``role`` column says ``primary`` or ``secondary``.
    Returns a pandas DataFrame, one row per claim, in the order of ``claims``.
    """
    import pandas as pd

    if primary is not None:
        unknown = [name for name in primary if name not in claims]
        if unknown or isinstance(primary, str):
            raise ValueError(f"primary must name claims of the family, got {primary!r}")
        tables = []
        for role in ("primary", "secondary"):
            family = {n: c for n, c in claims.items() if (n in primary) == (role == "primary")}
            if family:
                tables.append(verdicts(family, alpha=alpha))
                tables[-1].insert(0, "role", role)
        return pd.concat(tables).loc[list(claims)]
    rows = []
    for name, c, p_holm, reject, level in _holm_family(claims, "p", alpha):
        if math.isnan(c["p"]):
            verdict = "not measured"
        elif reject:
            verdict = "supported" if c["gain"] > 0 else "contradicted"
        else:
            verdict = "not resolved"
        if not math.isnan(level) and {"std_error", "df"} <= set(c):
            c["detectable"] = detectable_effect(c["std_error"], c["df"], alpha=level)
        rows.append({"claim": name, **c, "p_holm": p_holm, "verdict": verdict})
    return pd.DataFrame(rows).set_index("claim")


def equivalence_verdicts(claims: Mapping[str, dict[str, Any]], *, alpha: float = ALPHA):
    """The verdict table of a family of "as ... as" claims (:func:`equivalence` results by claim).

    Holm's correction runs over the family's ``p_equivalence``. A claim is ``supported`` when
    Holm rejects "the difference reaches the margin", ``contradicted`` when its ``1 - 2 alpha``
    interval lies wholly outside ``(-margin, margin)``, ``not resolved`` otherwise and ``not
    measured`` without data. ``ci_low``/``ci_high`` are that interval; ``detectable`` is the
    smallest margin the design could have shown equivalence within, at the Holm level the claim
    faced, with :data:`POWER` when the true difference is 0: ``(t_{1-level} + t_{(1+power)/2})``
    times the standard error. Returns a pandas DataFrame, one row per claim.
    """
    import pandas as pd

    rows = []
    for name, c, p_holm, reject, level in _holm_family(claims, "p_equivalence", alpha):
        outside = c["eq_low"] >= c["margin"] or c["eq_high"] <= -c["margin"]
        if math.isnan(c["p_equivalence"]):
            verdict = "not measured"
        else:
            verdict = "supported" if reject else "contradicted" if outside else "not resolved"
        detectable = math.nan
        if not math.isnan(level):
            quantiles = sps.t.ppf(1 - level, c["df"]) + sps.t.ppf((1 + POWER) / 2, c["df"])
            detectable = float(quantiles * c["std_error"])
        rows.append(
            {
                "claim": name,
                **c,
                "ci_low": c["eq_low"],
                "ci_high": c["eq_high"],
                "detectable": detectable,
                "p_holm": p_holm,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows).set_index("claim")


def mean_interval(values: Iterable[float], *, alpha: float = ALPHA) -> dict[str, float]:
    """The mean of per-seed ``values`` with its ``1 - alpha`` t-interval (``mean``, ``ci_low``,
    ``ci_high``, ``n``; NaN interval with fewer than 2 values): for a figure read on its own,
    whether its interval excludes a reference value such as 0."""
    alpha = _check_level("alpha", alpha)
    v = _values("values", values)
    mean = float(v.mean()) if len(v) else math.nan
    if len(v) < 2:
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "n": len(v)}
    half = float(sps.t.ppf(1 - alpha / 2, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(v)}


def seeds_that_learnt(
    values: Mapping[int, float], *, threshold: float
) -> tuple[list[int], list[int]]:
    """Split seeds by a gate stated in advance: those whose value reaches ``threshold`` (learnt)
    and the others (to be re-run with new seeds and reported, never averaged in)."""
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not math.isfinite(threshold)
    ):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    learnt = [s for s, v in values.items() if v >= threshold]
    return learnt, [s for s in values if s not in learnt]
