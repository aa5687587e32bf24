"""The paper's English re-annotation (10 pairs, 8 annotators) beside the Urdu ratings: figures checked
against independent computations and the authors' printed outputs, honest intervals and undefined
statistics on ten items, and the cross-culture table with both languages (also through Snakemake)."""

from __future__ import annotations

import json

import krippendorff
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, RESOURCES, snakemake
from empathy_workflow.agreement import cross_culture, tables
from empathy_workflow.core import agreement_measures, reliability, stats
from empathy_workflow.core.io import InputError
from sklearn.metrics import cohen_kappa_score
from test_agreement import NO_BOOT, SCALE, reference_alpha, urdu_long

ENGLISH = RESOURCES / "english_reannotation" / "ratings.csv"
# The six annotators of the authors' first notebook (agrement_score.ipynb) are these of the eight.
SIX = ["annotator1", "annotator2", "annotator3", "annotator4", "annotator7", "annotator8"]


def english_long() -> pd.DataFrame:
    return pd.read_csv(ENGLISH, dtype={"item_id": str, "annotator": str, "aspect": str})


def wide(frame: pd.DataFrame, aspect: str) -> pd.DataFrame:
    """Annotators x items of one aspect, items in pair order."""
    part = frame[frame["aspect"] == aspect].pivot(index="annotator", columns="item_id", values="score")
    return part[[f"pair{i}" for i in range(1, 11)]]


def compare_as() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return {"english_reannotation": config["agreement"]["datasets"]["english_reannotation"]["compare_as"]}


@pytest.fixture(scope="module")
def english_results():
    return reliability.analyse(english_long(), SCALE, NO_BOOT, seed=42)[0]


def test_english_figures_by_hand(english_results):
    frame = english_long()
    assert len(english_results) == 10
    assert all(r["n_items"] == 10 and r["n_annotators"] == 8 for r in english_results.values())
    # off-grid ratings are accepted as rated, never rounded before the statistics
    assert {1.2, 2.2} <= set(english_results["summary_empathy"]["value_domain"])
    # a mean by hand: annotator2's summary_empathy ratings 1, 2, 1.5, 3, 2, 3.5, 2.5, 1, 1.2, 2.2
    assert english_results["summary_empathy"]["annotator_means"]["annotator2"] == pytest.approx(19.9 / 10)

    # mean pairwise Pearson: numpy's correlation matrix of the wide ratings
    full_event = wide(frame, "full_event").to_numpy(float)
    by_numpy = np.corrcoef(full_event)[np.triu_indices(8, 1)].mean()
    assert english_results["full_event"]["mean_pairwise_pearson"] == pytest.approx(by_numpy, abs=1e-12)
    assert by_numpy == pytest.approx(0.441631, abs=1e-6)  # the authors' printed figure

    # Cohen's kappa: sklearn on ratings rounded half up (1.2 -> 1, 2.2 -> 2, 2.5 -> 3), pair by pair
    summary_empathy = wide(frame, "summary_empathy").to_numpy(float)
    rounded = np.floor(summary_empathy + 0.5).astype(int)
    kappas = [cohen_kappa_score(rounded[a], rounded[b]) for a in range(8) for b in range(a + 1, 8)]
    assert english_results["summary_empathy"]["mean_pairwise_cohen_kappa"] == pytest.approx(np.mean(kappas))
    assert np.mean(kappas) == pytest.approx(0.046790, abs=1e-6)

    # interval alpha on a subset (the first notebook's six annotators): the krippendorff package on
    # the reliability data and the coincidence-matrix definition agree with ours and with the notebook
    subset = frame[frame["annotator"].isin(SIX)]
    ours = reliability.analyse(subset[subset["aspect"] == "summary_empathy"], SCALE, NO_BOOT, 42)[0]
    matrix = wide(subset, "summary_empathy").to_numpy(float)
    package = krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval")
    assert ours["summary_empathy"]["krippendorff_alpha"]["interval"] == pytest.approx(package, abs=1e-12)
    assert reference_alpha(matrix, "interval") == pytest.approx(package, abs=1e-12)
    assert package == pytest.approx(0.174792, abs=1e-6)


def test_ten_items_get_expanded_intervals():
    # tail probability Phi(-sqrt(10/9) * t(9, 0.975)) = Phi(-1.05409 * 2.26216) = Phi(-2.3845)
    assert stats.expanded_tail(10, 0.95) == pytest.approx(0.00855, abs=2e-5)
    assert stats.expanded_tail(291, 0.95) == pytest.approx(0.0243, abs=1e-4)
    part = english_long().query("aspect == 'full_event'")
    result = reliability.analyse(part, SCALE, {"bootstrap": 200, "confidence": 0.95}, seed=42)[0]["full_event"]
    assert result["bootstrap"]["tail_probability"] == pytest.approx(0.00855, abs=2e-5)
    low, high = result["ci"]["krippendorff_alpha"]["interval"]
    assert low < result["krippendorff_alpha"]["interval"] < high and high - low > 0.4
    assert result["undefined"] == {}


def test_undefined_statistic_is_null_with_its_reason():
    # three annotators who each give one value only: no Pearson for any pair, yet alpha exists
    frame = pd.DataFrame([{"item_id": f"i{i}", "annotator": f"a{a}", "aspect": "empathy", "score": float(a)}
                          for a in (1, 2, 3) for i in range(6)])
    result = reliability.analyse(frame, SCALE, {"bootstrap": 20, "confidence": 0.95}, seed=0)[0]["empathy"]
    assert result["mean_pairwise_pearson"] is None and result["mean_pairwise_spearman"] is None
    assert "undefined for all 3 annotator pairs" in result["undefined"]["mean_pairwise_pearson"]
    assert result["human_ceiling"]["expected_correlation"] is None
    assert "human_ceiling.expected_correlation" in result["undefined"]
    assert result["ci"]["mean_pairwise_pearson"] is None  # no interval around an undefined estimate
    assert result["krippendorff_alpha"]["interval"] < 0
    json.dumps(result, allow_nan=False)  # null, never NaN
    assert "Undefined statistics" in tables.agreement_markdown("toy", {"empathy": result})

    # two items: Pearson exists (1.0), but half the resamples draw one item twice, leaving each
    # rater constant; an interval over the other half would pretend the statistic always exists
    frame = pd.DataFrame([{"item_id": f"i{i}", "annotator": a, "aspect": "empathy", "score": float(i + 1)}
                          for a in ("a", "b") for i in range(2)])
    result = reliability.analyse(frame, SCALE, {"bootstrap": 40, "confidence": 0.95}, seed=0)[0]["empathy"]
    assert result["mean_pairwise_pearson"] == pytest.approx(1.0)
    assert result["ci"]["mean_pairwise_pearson"] is None
    assert "of 40 resamples (more than 10%)" in result["undefined"]["ci.mean_pairwise_pearson"]


def test_vectorised_pairs_equal_the_per_pair_functions():
    rng = np.random.default_rng(3)
    for trial in range(60):
        matrix = rng.choice([1, 1.2, 1.5, 2, 2.2, 2.5, 3, 3.5, 4], size=(rng.integers(2, 9), rng.integers(2, 12)))
        if trial % 3 == 0:
            matrix[0] = 2.0  # a constant rater: undefined pairs
        for name, function in agreement_measures.PAIR_FUNCTIONS.items():
            slow, slow_skipped = agreement_measures.pairwise(matrix, function)
            fast, fast_skipped = agreement_measures.pairwise_complete(matrix, name)
            assert fast_skipped == slow_skipped
            np.testing.assert_allclose(fast, slow, atol=1e-12, equal_nan=True)
        loo = agreement_measures.leave_one_out_complete(matrix)
        np.testing.assert_allclose(loo[0], agreement_measures.leave_one_out(matrix, stats.pearson), equal_nan=True)
        np.testing.assert_allclose(loo[1], agreement_measures.leave_one_out(matrix, stats.spearman), equal_nan=True)


def test_cross_culture_table_has_both_languages(english_results):
    urdu = reliability.analyse(urdu_long()[0], SCALE, NO_BOOT, seed=42)[0]
    results = {"urdu_stories": urdu, "english_reannotation": english_results}
    languages = {"urdu_stories": "ur", "english_reannotation": "en"}
    summary = cross_culture.cross_culture(results, languages, compare_as())
    assert sorted(summary["shared_aspects"]) == ["emotion", "empathy", "event"]
    for aspect, rows in summary["shared_aspects"].items():
        assert {r["language"] for r in rows} == {"ur", "en"}
        assert rows[0]["dataset"] == "urdu_stories"
    assert [r["aspect"] for r in summary["shared_aspects"]["event"][1:]] == ["both_event", "full_event",
                                                                             "summary_event"]
    assert [r["aspect"] for r in summary["separate_aspects"]["moral"]] == ["full_moral", "summary_moral"]
    assert len(summary["comparisons"]) == 8  # every English variant against its Urdu aspect
    full_event = next(c for c in summary["comparisons"] if c["english"].endswith("/full_event"))
    assert full_event["alpha_interval_difference"] == pytest.approx(
        english_results["full_event"]["krippendorff_alpha"]["interval"] - urdu["event"]["krippendorff_alpha"]["interval"])
    notes = " ".join(summary["notes"])
    assert "summary_empathy: 1.2, 2.2" in notes and "english_reannotation has 10 items" in notes
    markdown = cross_culture.cross_culture_markdown(summary)
    assert "| event | urdu_stories | event | ur |" in markdown
    assert "| event | english_reannotation | full_event | en |" in markdown
    with pytest.raises(InputError, match=r"compare_as names aspect\(s\) 'full_warmth'"):
        cross_culture.cross_culture(results, languages, {"english_reannotation": {"full_warmth": "event"}})


def test_default_config_writes_english_agreement_and_both_languages(tmp_path):
    """The default config's agreement stage alone (a targeted Snakemake run, few resamples)."""
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"agreement": {"bootstrap": 20}}))
    snakemake(tmp_path, "--cores", "2", "results/agreement/cross_culture.json",
              configfiles=[tmp_path / "extra.yaml"])
    english = json.loads((tmp_path / "results/agreement/english_reannotation/agreement.json").read_text())
    assert len(english) == 10
    for result in english.values():  # the INTERFACE keys
        assert set(result["krippendorff_alpha"]) == set(stats.LEVELS)
        for key in ("mean_pairwise_pearson", "mean_pairwise_spearman", "mean_pairwise_cohen_kappa", "ci"):
            assert key in result
        assert (result["n_items"], result["n_annotators"]) == (10, 8)
    summary = json.loads((tmp_path / "results/agreement/cross_culture.json").read_text())
    assert {r["language"] for rows in summary["shared_aspects"].values() for r in rows} == {"en", "ur"}
    table = (tmp_path / "results/agreement/cross_culture.md").read_text()
    assert "| empathy | urdu_stories | empathy | ur |" in table
    assert "| empathy | english_reannotation | summary_empathy | en |" in table
