import math

import numpy as np
import pytest
from scipy import stats as sps

from pilcro_lib.stats import (
    compare,
    detectable_effect,
    equivalence,
    equivalence_verdicts,
    holm,
    holm_levels,
    mean_interval,
    seeds_that_learnt,
    verdicts,
    welch_df,
)


def test_compare_matches_scipy_welch_test():
    treated, control = [0.91, 0.93, 0.92, 0.95, 0.90], [0.88, 0.90, 0.87, 0.91, 0.86, 0.89]
    result = compare(treated, control)
    reference = sps.ttest_ind(treated, control, equal_var=False)
    assert result["t"] == pytest.approx(reference.statistic, rel=1e-12)
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-10)
    ci = reference.confidence_interval(0.95)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert result["difference"] == pytest.approx(np.mean(treated) - np.mean(control))
    assert compare(treated, control, higher_is_better=False)["gain"] == pytest.approx(
        -result["difference"]
    )


def test_welch_df_closed_form():
    # equal variances and sizes: df = 2n - 2
    assert welch_df(1.0, 5, 1.0, 5) == pytest.approx(8.0)
    assert welch_df(4.0, 10, 0.0, 3) == pytest.approx(9.0)  # all the variance in one arm: n - 1


def test_detectable_effect_has_its_stated_power():
    """Simulated: a true difference equal to the detectable effect (known sigma) is found ~80% of
    the time."""
    rng = np.random.default_rng(0)
    n, sigma = 8, 1.0
    se = sigma * math.sqrt(2 / n)
    effect = detectable_effect(se, welch_df(sigma**2, n, sigma**2, n))
    a = rng.normal(effect, sigma, size=(4000, n))
    b = rng.normal(0.0, sigma, size=(4000, n))
    p = sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    assert 0.74 < (p < 0.05).mean() < 0.86


def test_holm_hand_example():
    adjusted, rejected = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert rejected == [True, False, False, False]


def test_verdicts_table():
    claims = {
        "better": compare([0.9, 0.91, 0.92, 0.93, 0.94], [0.8, 0.81, 0.82, 0.83, 0.84]),
        "worse": compare([0.7, 0.71, 0.72, 0.73, 0.74], [0.8, 0.81, 0.82, 0.83, 0.84]),
        "noise": compare([0.8, 0.9, 0.7, 0.85, 0.75], [0.81, 0.79, 0.8, 0.82, 0.78]),
        "missing": compare([0.9], [0.8, 0.81]),
    }
    table = verdicts(claims)
    assert list(table["verdict"]) == ["supported", "contradicted", "not resolved", "not measured"]
    assert table.loc["noise", "detectable"] > abs(table.loc["noise", "difference"])


def test_seed_gate():
    assert seeds_that_learnt({0: 0.9, 1: 0.1, 2: 0.8}, threshold=0.5) == ([0, 2], [1])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: compare("ab", [1.0, 2.0]), TypeError, "treated must be a sequence of numbers"),
        (
            lambda: compare([1.0, 2.0], [1.0, 2.0], higher_is_better=1),
            TypeError,
            "higher_is_better must be True or False",
        ),
        (
            lambda: compare([1.0, math.inf], [1.0, 2.0]),
            ValueError,
            "treated holds an infinite value",
        ),
        (
            lambda: compare([1.0, 2.0], [1.0, 2.0], alpha=1.5),
            ValueError,
            r"alpha must be a number in \(0, 1\)",
        ),
        (
            lambda: detectable_effect(0.1, 4, power=0),
            ValueError,
            r"power must be a number in \(0, 1\)",
        ),
        (lambda: holm([0.1], alpha=True), ValueError, "alpha must be a number"),
        (
            lambda: seeds_that_learnt({0: 0.5}, threshold=math.nan),
            ValueError,
            "threshold must be a finite number",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_equivalence_matches_statsmodels_two_one_sided_tests():
    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(1)
    for _ in range(20):
        treated = rng.normal(0.0, 1.0, size=rng.integers(3, 9))
        control = rng.normal(rng.normal(0, 0.5), rng.uniform(0.5, 2), size=rng.integers(3, 9))
        margin = float(rng.uniform(0.2, 2.0))
        result = equivalence(treated, control, margin=margin)
        p, _, _ = ttost_ind(treated, control, -margin, margin, usevar="unequal")
        assert result["p_equivalence"] == pytest.approx(p, rel=1e-9, abs=1e-12)
        assert result["equivalent"] == (p < 0.05)
        inside = -margin < result["eq_low"] and result["eq_high"] < margin
        assert result["equivalent"] == inside  # the 90% interval inside the margin


def test_equivalence_needs_a_margin_and_two_values_an_arm():
    same = equivalence([1.0, 1.01, 0.99], [1.0, 1.02, 0.98], margin=0.1)
    assert same["equivalent"] and same["margin"] == 0.1
    assert not equivalence([1.0, 1.01, 0.99], [1.0, 1.02, 0.98], margin=0.001)["equivalent"]
    short = equivalence([1.0], [1.0, 2.0], margin=0.1)
    assert not short["equivalent"] and math.isnan(short["p_equivalence"])
    for margin in (0, -1.0, math.inf, True, "0.1"):
        with pytest.raises(ValueError, match="margin must be"):
            equivalence([1.0, 2.0], [1.0, 2.0], margin=margin)


def test_equivalence_verdicts_follow_holm_and_the_interval():
    from statsmodels.stats.multitest import multipletests

    same = equivalence([1.0, 1.01, 0.99, 1.0], [1.0, 1.02, 0.98, 1.01], margin=0.1)
    apart = equivalence([2.0, 2.01, 1.99], [1.0, 1.02, 0.98], margin=0.1)
    noisy = equivalence([1.0, 1.3, 0.7], [1.0, 1.4, 0.6], margin=0.1)
    short = equivalence([1.0], [1.0, 1.1], margin=0.1)
    table = equivalence_verdicts({"same": same, "apart": apart, "noisy": noisy, "short": short})
    assert table["verdict"].to_dict() == {
        "same": "supported",
        "apart": "contradicted",
        "noisy": "not resolved",
        "short": "not measured",
    }
    measured = [same, apart, noisy]
    p_holm = multipletests([c["p_equivalence"] for c in measured], method="holm")[1]
    assert table["p_holm"].iloc[:3].tolist() == pytest.approx(list(p_holm))
    assert table.loc["same", "ci_low"] == same["eq_low"]
    # the smallest margin shown with 80% power at a true difference of 0, at the claim's level
    level = holm_levels([c["p_equivalence"] for c in measured])[2]
    t = sps.t
    expected = (t.ppf(1 - level, noisy["df"]) + t.ppf(0.9, noisy["df"])) * noisy["std_error"]
    assert table.loc["noisy", "detectable"] == pytest.approx(expected)
    assert math.isnan(table.loc["short", "detectable"])


def test_primary_endpoints_get_their_own_holm_family():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    claims = {
        f"claim {i}": compare(rng.normal(shift, 1, 5), rng.normal(0, 1, 5))
        for i, shift in enumerate([2.0, 0.5, 1.5, 0.0, 3.0])
    }
    primary = ["claim 0", "claim 2"]
    table = verdicts(claims, primary=primary)
    assert list(table.index) == list(claims)  # the family's order is kept
    assert table["role"].tolist() == ["primary", "secondary", "primary", "secondary", "secondary"]
    for names in (primary, ["claim 1", "claim 3", "claim 4"]):  # each role its own family
        expected = multipletests([claims[n]["p"] for n in names], method="holm")[1]
        assert table.loc[names, "p_holm"].tolist() == pytest.approx(list(expected))
    alone = verdicts({n: claims[n] for n in primary})
    assert table.loc[primary, "detectable"].tolist() == pytest.approx(alone["detectable"].tolist())
    assert verdicts(claims, primary=list(claims))["role"].eq("primary").all()
    with pytest.raises(ValueError, match="primary must name claims"):
        verdicts(claims, primary=["claim 9"])


def test_mean_interval_matches_scipys_t_interval():
    values = [0.12, 0.08, 0.15, 0.11, 0.09]
    got = mean_interval(values)
    low, high = sps.t.interval(0.95, 4, loc=np.mean(values), scale=sps.sem(values))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high))
    assert got["mean"] == pytest.approx(0.11) and got["n"] == 5
    assert math.isnan(mean_interval([0.1])["ci_low"]) and mean_interval([0.1])["mean"] == 0.1


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(2)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 12)).tolist()
        adjusted, rejected = holm(p)
        reject_ref, adjusted_ref, _, _ = multipletests(p, alpha=0.05, method="holm")
        assert adjusted == pytest.approx(adjusted_ref.tolist(), rel=1e-12)
        assert rejected == reject_ref.tolist()


def test_holm_levels_step_down_and_detectable_is_computed_at_the_level_faced():
    assert holm_levels([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx(
        [0.05 / 3, 0.05 / 1, 0.05 / 2]
    )
    assert math.isnan(holm_levels([0.01, float("nan")])[1])
    claims = {
        "a": compare([0.9, 0.91, 0.92, 0.93, 0.94], [0.8, 0.81, 0.82, 0.83, 0.84]),
        "b": compare([0.8, 0.82, 0.79, 0.83, 0.81], [0.8, 0.81, 0.82, 0.83, 0.84]),
    }
    table = verdicts(claims)
    assert "holm_level" not in table.columns  # used, not shown
    for name, level in (("a", 0.05 / 2), ("b", 0.05)):
        c = claims[name]
        expected = detectable_effect(c["std_error"], c["df"], alpha=level)
        assert table.loc[name, "detectable"] == pytest.approx(expected)
    # the first claim faced a stricter level than compare's unadjusted 0.05: a larger effect
    assert table.loc["a", "detectable"] > claims["a"]["detectable"]
