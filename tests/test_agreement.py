"""Annotator agreement: every statistic against an independent computation or a hand-worked answer,
bad input, bootstrap determinism, the real Urdu ratings, and a user-declared dataset end to end."""

from __future__ import annotations

import itertools
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import RESOURCES, snakemake
from empathy_workflow.agreement import aggregate
from empathy_workflow.core import agreement_measures, ratings, reliability, stats
from empathy_workflow.core.io import InputError

SCALE = {"min": 1.0, "max": 4.0}
NO_BOOT = {"bootstrap": 0, "confidence": 0.95}
N = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12
# units with missing values. Published: nominal .743, ordinal .815, interval .849, ratio .797.
TEXTBOOK = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
])
PUBLISHED = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}


def reference_alpha(matrix: np.ndarray, level: str) -> float:
    """Krippendorff's alpha straight from the definition: coincidence matrix, then D_o / D_e."""
    units = [[v for v in column if not math.isnan(v)] for column in matrix.T]
    units = [u for u in units if len(u) >= 2]
    values = sorted({v for u in units for v in u})
    coincidence = {(c, k): 0.0 for c in values for k in values}
    for u in units:
        for i, j in itertools.permutations(range(len(u)), 2):
            coincidence[u[i], u[j]] += 1 / (len(u) - 1)
    n_c = {c: sum(coincidence[c, k] for k in values) for c in values}
    n = sum(n_c.values())

    def delta(c, k):
        if level == "nominal":
            return float(c != k)
        if level == "interval":
            return (c - k) ** 2
        if level == "ratio":
            return ((c - k) / (c + k)) ** 2
        low, high = min(c, k), max(c, k)
        between = sum(n_c[g] for g in values if low <= g <= high)
        return (between - (n_c[c] + n_c[k]) / 2) ** 2

    observed = sum(coincidence[c, k] * delta(c, k) for c in values for k in values)
    expected = sum(n_c[c] * (n_c[k] - (c == k)) * delta(c, k) for c in values for k in values) / (n - 1)
    return 1 - observed / expected


def long_frame(matrix: np.ndarray, aspect: str = "empathy") -> pd.DataFrame:
    """Annotators x items matrix -> long rows; NaN = absent row."""
    return pd.DataFrame([
        {"item_id": f"i{j}", "annotator": f"a{i}", "aspect": aspect, "score": matrix[i, j]}
        for i in range(matrix.shape[0]) for j in range(matrix.shape[1]) if not math.isnan(matrix[i, j])
    ])


def random_ratings(seed: int, annotators: int = 4, items: int = 40, missing: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = rng.integers(2, 9, size=items) / 2  # 1.0 .. 4.0 in half steps
    noise = rng.integers(-2, 3, size=(annotators, items)) / 2
    matrix = np.clip(truth + noise, 1.0, 4.0)
    matrix[rng.random(matrix.shape) < missing] = np.nan
    return matrix


# ---------------------------------------------------------------------------------------------
# Krippendorff's alpha


@pytest.mark.parametrize("level", stats.LEVELS)
def test_alpha_textbook_example_with_missing_values(level):
    value = stats.krippendorff_alpha(TEXTBOOK, level)
    assert value == pytest.approx(reference_alpha(TEXTBOOK, level), abs=1e-12)
    assert round(value, 3) == PUBLISHED[level]


@pytest.mark.parametrize("level", stats.LEVELS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_half_point_ratings_with_missing_values(level, seed):
    matrix = random_ratings(seed)
    assert np.isnan(matrix).any()
    results, _ = reliability.analyse(long_frame(matrix), SCALE, NO_BOOT, seed=0)
    # Items rated once drop out of alpha by definition; the analysis excludes them explicitly.
    assert results["empathy"]["krippendorff_alpha"][level] == pytest.approx(reference_alpha(matrix, level), abs=1e-12)


def test_unused_scale_values_change_neither_nominal_nor_ordinal_alpha():
    matrix = random_ratings(5)
    full = np.arange(1.0, 4.01, 0.5)
    matrix[matrix == 2.5] = 3.0  # leave 2.5 unused
    observed = np.unique(matrix[~np.isnan(matrix)])
    assert 2.5 not in observed
    for level in ("nominal", "ordinal"):
        assert stats.krippendorff_alpha(matrix, level, observed) == pytest.approx(
            stats.krippendorff_alpha(matrix, level, full), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Hand-made cases with known answers


def test_perfect_agreement_gives_one_everywhere():
    matrix = np.array([[1, 2, 3, 4, 2.5, 1.5]] * 3, dtype=float)
    result = reliability.analyse(long_frame(matrix), SCALE, NO_BOOT, seed=0)[0]["empathy"]
    for level in stats.LEVELS:
        assert result["krippendorff_alpha"][level] == pytest.approx(1.0)
    for key in ("mean_pairwise_pearson", "mean_pairwise_spearman", "mean_pairwise_cohen_kappa",
                "quadratic_weighted_kappa"):
        assert result[key] == pytest.approx(1.0)
    ceiling = result["human_ceiling"]
    assert ceiling["expected_correlation"] == pytest.approx(1.0)
    assert ceiling["leave_one_out_mean_pearson"] == pytest.approx(1.0)
    assert result["n_items"] == 6 and result["n_annotators"] == 3


def test_round_half_up_is_not_bankers_rounding():
    assert np.round(2.5) == 2.0  # numpy: half to even, the trap
    assert stats.round_half_up([2.5, 1.5, 3.5, 0.5, 2.4, 2.6, 1.0]).tolist() == [3, 2, 4, 1, 2, 3, 1]


def test_cohen_kappa_two_by_two_by_hand():
    # 50 items: both yes 20, x yes / y no 5, x no / y yes 10, both no 15.
    # p_o = 35/50 = .7; p_e = .5*.6 + .5*.4 = .5; kappa = (.7 - .5) / (1 - .5) = .4
    x = np.array([1] * 20 + [1] * 5 + [0] * 10 + [0] * 15, dtype=float)
    y = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15, dtype=float)
    assert agreement_measures.cohen_kappa(x, y) == pytest.approx(0.4)


def test_cohen_kappa_rounds_half_points_up_first():
    # 2.5 -> 3 and 3 agree after rounding; 1.5 -> 2 and 2 agree: every pair agrees.
    x = np.array([2.5, 1.5, 4.0, 1.0])
    y = np.array([3.0, 2.0, 4.0, 1.0])
    assert agreement_measures.rounded_cohen_kappa(x, y) == pytest.approx(1.0)
    # Banker's rounding would send 2.5 to 2, disagreeing with 3: kappa < 1.
    assert agreement_measures.cohen_kappa(np.round(x), np.round(y)) < 1.0


def test_quadratic_weighted_kappa_by_hand():
    # observed mean squared difference (0 + 1 + 0)/3 = 1/3; expected over all 9 cross pairs
    # (x_i - y_j)^2: x=1 -> 0+4+4, x=2 -> 1+1+1, x=3 -> 4+0+0: 15/9. QWK = 1 - (1/3)/(5/3) = 0.8
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 3.0])
    assert agreement_measures.quadratic_weighted_kappa(x, y) == pytest.approx(0.8)


def test_quadratic_weighted_kappa_matches_sklearn_on_integer_categories():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    x = rng.integers(1, 5, 60).astype(float)
    y = np.clip(x + rng.integers(-1, 2, 60), 1, 4)
    expected = cohen_kappa_score(x, y, weights="quadratic", labels=[1, 2, 3, 4])
    assert agreement_measures.quadratic_weighted_kappa(x, y) == pytest.approx(expected)


def test_pearson_and_spearman_by_hand():
    x, y = np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])
    # rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6*2/60 = 0.8; ranks equal values, so r = 0.8 too
    assert stats.spearman(x, y) == pytest.approx(0.8)
    assert stats.pearson(x, y) == pytest.approx(0.8)
    # ties share their mean rank
    assert stats.spearman(np.array([1.0, 1, 2]), np.array([1.0, 2, 3])) == pytest.approx(math.sqrt(3) / 2)


def test_pairwise_means_use_items_both_annotators_rated():
    matrix = np.array([
        [1, 2, 3, 4, N],
        [1, 3, 2, 4, 4],
        [N, 2, 3, 4, 1],
    ])
    result = reliability.analyse(long_frame(matrix), SCALE, NO_BOOT, seed=0)[0]["empathy"]
    expected = []
    for a, b in itertools.combinations(range(3), 2):
        both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
        expected.append(np.corrcoef(matrix[a, both], matrix[b, both])[0, 1])
    assert result["mean_pairwise_pearson"] == pytest.approx(np.mean(expected))
    assert result["pairwise"]["pearson"]["a0"]["a1"] == pytest.approx(0.8)
    assert result["missing_ratings"] == 2 and result["n_ratings"] == 13


def test_leave_one_out_and_spearman_brown():
    matrix = random_ratings(7, annotators=4, items=30, missing=0.0)
    result = reliability.analyse(long_frame(matrix), SCALE, NO_BOOT, seed=0)[0]["empathy"]
    ceiling = result["human_ceiling"]
    for i, name in enumerate(result["annotators"]):
        others = np.delete(matrix, i, axis=0).mean(axis=0)
        assert ceiling["leave_one_out"]["pearson"][name] == pytest.approx(np.corrcoef(matrix[i], others)[0, 1])
    r = result["mean_pairwise_pearson"]
    assert ceiling["reliability_of_mean"] == pytest.approx(4 * r / (1 + 3 * r))
    assert ceiling["expected_correlation"] == pytest.approx(math.sqrt(4 * r / (1 + 3 * r)))
    assert agreement_measures.spearman_brown(0.5, 4) == pytest.approx(0.8)
    assert ceiling["method"] == reliability.CEILING_METHOD and "Spearman-Brown" in ceiling["method"]


def test_human_ceiling_predicts_true_score_correlation_in_simulation():
    # Ratings = true score + independent noise: the perfect model (the true score) should correlate
    # with the mean label at the predicted ceiling.
    rng = np.random.default_rng(11)
    truth = rng.normal(size=3000)
    matrix = np.round(2 * (truth + rng.normal(scale=1.2, size=(5, 3000)))) / 2  # a half-point scale
    predicted = agreement_measures.point_statistics(matrix, np.unique(matrix))["human_ceiling.expected_correlation"]
    actual = np.corrcoef(truth, matrix.mean(axis=0))[0, 1]
    assert predicted == pytest.approx(actual, abs=0.02)
    splits = agreement_measures.half_splits(5, rng)
    assert len(splits) == 10
    half = agreement_measures.ceiling_from_reliability(agreement_measures.spearman_brown(agreement_measures.split_half(matrix, splits), 2))
    assert half == pytest.approx(actual, abs=0.03)


# ---------------------------------------------------------------------------------------------
# Bad input


def base_frame() -> pd.DataFrame:
    return long_frame(np.array([[1, 2, 3, 4], [1, 3, 3, 4], [2, 2, 4, 4]], dtype=float))


def test_off_scale_score_is_an_error_naming_the_row():
    frame = base_frame()
    frame.loc[4, "score"] = 5.0
    with pytest.raises(InputError, match=r"ratings.csv: row 6, column 'score': 5.0 is off the scale"):
        ratings.validate_ratings(frame, SCALE, "ratings.csv")


def test_non_numeric_score_is_an_error():
    frame = base_frame().astype({"score": object})
    frame.loc[2, "score"] = "high"
    with pytest.raises(InputError, match=r"row 4, column 'score': 'high' is not a number"):
        ratings.validate_ratings(frame, SCALE, "ratings.csv")


def test_aspect_with_one_annotator_is_an_error():
    frame = pd.concat([base_frame(), long_frame(np.array([[1.0, 2, 3]]), aspect="event")])
    with pytest.raises(InputError, match=r"aspect 'event' is rated by 1 annotator\(s\) \(a0\)"):
        ratings.validate_ratings(frame, SCALE, "ratings.csv")


def test_duplicate_rows_are_an_error_naming_them():
    frame = base_frame()
    frame = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)
    with pytest.raises(InputError, match=r"1 duplicate|2 duplicate"):
        ratings.validate_ratings(frame, SCALE, "ratings.csv")
    with pytest.raises(InputError, match=r"rows 5, 14: item 'i3', annotator 'a0'"):
        ratings.validate_ratings(frame, SCALE, "ratings.csv")


def test_missing_column_is_an_error():
    with pytest.raises(InputError, match=r"lacks column\(s\) 'annotator'"):
        ratings.validate_ratings(base_frame().drop(columns="annotator"), SCALE, "ratings.csv")


def test_constant_ratings_are_an_error():
    with pytest.raises(InputError, match="every rating is 2.0"):
        ratings.validate_ratings(long_frame(np.full((3, 4), 2.0)), SCALE, "ratings.csv")


def test_items_with_fewer_than_two_ratings_are_excluded_counted_and_logged(caplog):
    matrix = np.array([[1, 2, 3, 4, 2, N], [1, 3, 3, 4, N, N], [2, 2, 4, 4, N, 3]], dtype=float)
    frame = long_frame(matrix)
    frame = pd.concat([frame, pd.DataFrame([{"item_id": "i0", "annotator": "a3", "aspect": "empathy",
                                             "score": None}])], ignore_index=True)
    with caplog.at_level(logging.WARNING):
        result = reliability.analyse(frame, SCALE, NO_BOOT, seed=0, source="toy.csv")[0]["empathy"]
    assert result["n_items"] == 4
    assert result["excluded"]["items_fewer_than_two_ratings"] == 2
    assert result["excluded"]["ratings_of_excluded_items"] == 2
    assert result["excluded"]["empty_score_rows"] == 1
    assert "excluding 2 item(s) with fewer than two ratings: i4, i5" in caplog.text
    assert "1 row(s) with an empty score" in caplog.text
    assert result["n_annotators"] == 3  # the annotator with only an empty score does not count


def test_undefined_pair_is_counted_not_silent(caplog):
    # a0 and a2 share one item only: their pair is undefined and counted; the rest still works.
    matrix = np.array([[1, 2, 3, N, N], [1, 3, 3, 4, 2], [N, N, 4, 4, 1]], dtype=float)
    with caplog.at_level(logging.WARNING):
        result = reliability.analyse(long_frame(matrix), SCALE, NO_BOOT, seed=0)[0]["empathy"]
    assert result["excluded"]["annotator_pairs_undefined"]["pearson"] == 1
    assert result["pairwise"]["pearson"]["a0"]["a2"] is None
    assert result["mean_pairwise_pearson"] is not None
    assert "annotator pair(s) have pearson undefined" in caplog.text


# ---------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_the_estimate():
    frame = long_frame(random_ratings(4, items=60))
    settings = {"bootstrap": 60, "confidence": 0.9}
    first = reliability.analyse(frame, SCALE, settings, seed=1)[0]["empathy"]
    again = reliability.analyse(frame, SCALE, settings, seed=1)[0]["empathy"]
    other = reliability.analyse(frame, SCALE, settings, seed=2)[0]["empathy"]
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert first["ci"] != other["ci"]
    for level in stats.LEVELS:
        low, high = first["ci"]["krippendorff_alpha"][level]
        assert low < first["krippendorff_alpha"][level] < high
    low, high = first["ci"]["mean_pairwise_pearson"]
    assert low < first["mean_pairwise_pearson"] < high
    assert set(first["ci"]["human_ceiling"]) == {"expected_correlation", "leave_one_out_mean_pearson",
                                                  "leave_one_out_mean_spearman"}
    assert first["bootstrap"]["resamples"] == 60


def reference_expanded_percentile(matrix: np.ndarray, resamples: int, confidence: float, seed: int,
                                  aspect: str) -> dict:
    """An independent expanded-percentile bootstrap of alpha (Hesterberg 2015): the same item
    draws (the generator seeded from seed and the aspect's CRC-32, one integers() call of n items
    per resample), alpha from its definition (reference_alpha), quantiles at tail probability
    Phi(-sqrt(n/(n-1)) * t(n-1, 1-(1-confidence)/2))."""
    import zlib

    from scipy.stats import norm, t

    rng = np.random.default_rng([seed, zlib.crc32(aspect.encode("utf-8"))])
    n = matrix.shape[1]
    draws = {level: [] for level in stats.LEVELS}
    for _ in range(resamples):
        columns = rng.integers(0, n, size=n)
        sample = matrix[:, columns]
        for level in stats.LEVELS:
            draws[level].append(reference_alpha(sample, level))
    tail = norm.cdf(-math.sqrt(n / (n - 1)) * t.ppf(1 - (1 - confidence) / 2, n - 1))
    return {level: (np.quantile(values, tail), np.quantile(values, 1 - tail)) for level, values in draws.items()}


def test_alpha_intervals_match_a_reference_bootstrap():
    """The workflow's intervals of alpha, at every level, equal an independent implementation's
    (items resampled, alpha from its definition, the expanded tail): a resample of annotators, a
    plain or mistaken tail, or a swapped quantile shows."""
    matrix = random_ratings(11, annotators=4, items=30, missing=0.1)
    domain = np.arange(1.0, 4.5, 0.5)
    library = agreement_measures.bootstrap(matrix, domain, 150, 0.9, 5, "empathy")["intervals"]
    reference = reference_expanded_percentile(matrix, 150, 0.9, 5, "empathy")
    for level in stats.LEVELS:
        assert library[f"krippendorff_alpha.{level}"] == pytest.approx(reference[level], abs=1e-9), level


def simulated_raters(rng: np.random.Generator, items: int, raters: int = 3) -> np.ndarray:
    """Raters who see an item's latent score through independent noise, on the 1-4 scale."""
    latent = rng.normal(0, 1, items)
    return np.clip(np.round(2.5 + 0.9 * (latent[None, :] + rng.normal(0, 0.7, (raters, items)))), 1, 4)


def test_alpha_interval_coverage_on_simulated_raters():
    """Raters with a known population alpha (interval level: alpha of 100,000 simulated items,
    0.603): the workflow's 90% intervals from 40 resamples of 20 items, over 120 seeded
    replications, cover it about 90% of the time (measured 0.908; a binomial 90% of 120 lies in
    0.85-0.95 with 95% probability). Too narrow or too wide intervals show (resamples of half the
    items: 0.967)."""
    domain = np.arange(1.0, 5.0)
    truth = stats.krippendorff_alpha(simulated_raters(np.random.default_rng(123), 100_000), "interval", domain)
    assert truth == pytest.approx(0.603, abs=0.005)
    rng = np.random.default_rng(7)
    covered = []
    for replication in range(COVERAGE_REPLICATIONS):
        interval = agreement_measures.bootstrap(simulated_raters(rng, 20), domain, 40, 0.9, replication,
                                       "empathy")["intervals"]["krippendorff_alpha.interval"]
        covered.append(interval[0] <= truth <= interval[1])
    coverage = float(np.mean(covered))
    print("coverage of the 90% alpha interval:", coverage)
    assert 0.83 <= coverage <= 0.95


COVERAGE_REPLICATIONS = 120


# ---------------------------------------------------------------------------------------------
# Real data


def urdu_long() -> pd.DataFrame:
    raw = pd.read_csv(RESOURCES / "urdu_stories" / "Urdu_Dataset_Annotation.csv")
    return pd.DataFrame([
        {"item_id": str(i), "annotator": f"person_{p}", "aspect": aspect, "score": raw.at[i, f"Person_{p}_{aspect}_score"]}
        for i in raw.index for p in range(1, 5) for aspect in ("event", "emotion", "empathy")
    ]), raw


def test_real_urdu_ratings():
    frame, raw = urdu_long()
    results, _ = reliability.analyse(frame, SCALE, {"bootstrap": 20, "confidence": 0.95}, seed=42)
    assert sorted(results) == ["emotion", "empathy", "event"]
    for aspect, result in results.items():
        excluded = result["excluded"]["items_fewer_than_two_ratings"]
        assert result["n_items"] == 291 - excluded and result["n_annotators"] == 4
        # independent checks: pandas' pairwise correlation of the raw wide columns, alpha from its
        # definition at every level, the ceiling sqrt(Spearman-Brown(mean r, k)) by hand
        wide = raw[[f"Person_{p}_{aspect}_score" for p in range(1, 5)]]
        r = wide.corr().to_numpy()[np.triu_indices(4, 1)].mean()
        assert result["mean_pairwise_pearson"] == pytest.approx(r)
        matrix = wide.to_numpy(dtype=float).T
        for level in ("nominal", "interval", "ratio"):
            assert result["krippendorff_alpha"][level] == pytest.approx(reference_alpha(matrix, level)), level
        k = wide.notna().sum(axis=1).mean()
        assert result["human_ceiling"]["expected_correlation"] == pytest.approx(math.sqrt(k * r / (1 + (k - 1) * r)))
    # the shipped averages are the annotators' means
    assert np.allclose(raw[[f"Person_{p}_empathy_score" for p in range(1, 5)]].mean(axis=1), raw["Emp_AVG"])


def test_aggregate_analysis_on_small_cases():
    frame = pd.DataFrame({"empathy": [1.0, 2, 3, 4, 2.5], "event": [1.0, 1, 2, 3, 2],
                          "gpt_score": [1, 2, 3, 5, 2], "label": [0, 0, 1, 1, 0]})
    result = aggregate.aggregate_analysis(frame, ["empathy", "event"], "gpt_score", SCALE,
                                          {"bootstrap": 10, "confidence": 0.95}, 0, "toy", "toy")
    agree = result["human_vs_gpt"]["empathy"]
    assert agree["pearson"] == pytest.approx(np.corrcoef(frame["empathy"], frame["gpt_score"])[0, 1])
    assert agree["krippendorff_alpha_interval"] is None and "outside the human scale" in agree["alpha_note"]
    assert result["distributions"]["label"]["counts"] == {"0": 3, "1": 2}
    on_scale = frame.assign(gpt_score=[1, 2, 3, 4, 2])
    result = aggregate.aggregate_analysis(on_scale, ["empathy"], "gpt_score", SCALE, NO_BOOT, 0, "toy", "toy")
    expected = reference_alpha(np.vstack([on_scale["empathy"], on_scale["gpt_score"]]).astype(float), "interval")
    assert result["human_vs_gpt"]["empathy"]["krippendorff_alpha_interval"] == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# A user-declared dataset, end to end through Snakemake, with no code change


def test_user_declared_dataset_end_to_end(tmp_path):
    matrix = random_ratings(9, annotators=3, items=25, missing=0.25)
    frame = pd.concat([long_frame(matrix, "warmth"), long_frame(random_ratings(10, 3, 25, 0.1), "clarity")])
    frame.to_csv(tmp_path / "my_ratings.csv", index=False)
    config = {"agreement": {"bootstrap": 20, "datasets": {"toy": {"path": str(tmp_path / "my_ratings.csv"),
                                                                  "language": "en"}}}}
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--cores", "1", "results/agreement/toy/agreement.json",
              configfiles=[tmp_path / "extra.yaml"])
    result = json.loads((tmp_path / "results/agreement/toy/agreement.json").read_text())
    assert sorted(result) == ["clarity", "warmth"]
    expected_items = int(((~np.isnan(matrix)).sum(axis=0) >= 2).sum())
    assert result["warmth"]["n_items"] == expected_items
    assert result["warmth"]["excluded"]["items_fewer_than_two_ratings"] == 25 - expected_items
    kept = matrix[:, (~np.isnan(matrix)).sum(axis=0) >= 2]
    for level in stats.LEVELS:
        assert result["warmth"]["krippendorff_alpha"][level] == pytest.approx(reference_alpha(kept, level))
        assert len(result["warmth"]["ci"]["krippendorff_alpha"][level]) == 2
    assert (tmp_path / "results/agreement/toy/agreement.md").read_text().startswith("# Annotator agreement: toy")
    plots = sorted(p.name for p in (tmp_path / "results/agreement/toy/plots").glob("*.png"))
    assert plots == ["alpha.png", "correlation_heatmap_clarity.png", "correlation_heatmap_warmth.png",
                     "rating_distribution.png"]

    # a bad user file stops at the preparation step with the file and row named
    frame.iloc[3, frame.columns.get_loc("score")] = 9
    frame.to_csv(tmp_path / "my_ratings.csv", index=False)
    failed = snakemake(tmp_path, "--cores", "1", "results/agreement/toy/agreement.json",
                       configfiles=[tmp_path / "extra.yaml"], check=False)
    assert failed.returncode != 0
    log = (tmp_path / "results/logs/agreement/toy_ratings.log").read_text()
    assert "my_ratings.csv: row 5, column 'score': 9.0 is off the scale [1.0, 4.0]" in log
