"""Reproduce every agreement figure the similarity paper's authors printed, from the shipped ratings
with the workflow's own agreement code, and write the comparison table (markdown) to stdout.

    python benchmarks/agreement_paper_check.py > /tmp/check.md

Reference figures: yuxiaw/Empathic-Similarity at commit 6ea161a0f2330a2bd1bf0b4a24c9c0ba835cc43b,
the printed outputs (6 decimals, `results` DataFrame; the LaTeX table beside it rounds to 3) of
  - Notebooks/agrement_score_all.ipynb: English, 10 pairs x 8 annotators; Urdu, 291 pairs x 4;
  - Notebooks/agrement_score.ipynb: English, the same pairs by the first 6 of those annotators
    (annotator1-4, 7, 8 of the shipped file, in the notebook's row order), and two single-aspect
    cells ("Summary", "Both") that pass the ratings transposed to krippendorff.alpha.
The notebooks compute, per aspect: mean over annotator pairs of scipy's Pearson and Spearman,
interval Krippendorff's alpha (krippendorff 0.6.1, `reliability_data` = annotators x items), and
mean pairwise sklearn Cohen's kappa on ratings rounded half up (`continuous2discrete`).
"""

from __future__ import annotations

from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

from empathy_workflow.core import reliability, stats

SCALE = {"min": 1.0, "max": 4.0}
NO_BOOT = {"bootstrap": 0, "confidence": 0.95}
STATS = {"Pearson": "mean_pairwise_pearson", "Spearman": "mean_pairwise_spearman",
         "alpha (interval)": "krippendorff_alpha.interval", "Cohen's kappa": "mean_pairwise_cohen_kappa"}
ASPECTS = ["summary_event", "summary_emotion", "summary_moral", "summary_empathy", "full_event",
           "full_emotion", "full_moral", "full_empathy", "both_event", "both_emotion"]
# Printed figures, rows Pearson, Spearman, alpha, kappa; columns as ASPECTS.
ALL_8 = [[0.421316, 0.077660, 0.189177, 0.191427, 0.441631, 0.098185, 0.110171, -0.014798, 0.175722, 0.140980],
         [0.395339, 0.062730, 0.187247, 0.189737, 0.437995, 0.087995, 0.137907, 0.004325, 0.158063, 0.128849],
         [0.348637, 0.059051, 0.167863, 0.114450, 0.398312, 0.092495, 0.105174, 0.026949, 0.095303, 0.106753],
         [0.124236, -0.015250, 0.067475, 0.046790, 0.156886, -0.024081, 0.030478, 0.025596, 0.059318, 0.048880]]
FIRST_6 = [[0.581790, 0.155280, 0.310519, 0.228040, 0.563536, 0.270575, 0.051252, 0.031988, 0.241508, 0.052038],
           [0.604233, 0.146020, 0.292014, 0.223108, 0.575274, 0.256377, 0.073308, 0.075464, 0.220195, 0.037332],
           [0.481779, 0.123137, 0.310050, 0.174792, 0.479739, 0.211596, 0.058979, 0.006253, 0.161579, 0.058627],
           [0.207227, 0.014788, 0.138764, 0.077727, 0.196022, -0.004507, 0.023106, 0.060007, 0.047524, 0.026425]]
URDU = {"event": [0.307883, 0.306694, 0.214479, 0.132614], "emotion": [0.380552, 0.361531, 0.316105, 0.168533],
        "empathy": [0.421791, 0.392323, 0.392366, 0.189745]}
SIX = ["annotator1", "annotator2", "annotator3", "annotator4", "annotator7", "annotator8"]
# The single-aspect cells of agrement_score.ipynb: (aspect, printed alpha, Pearson, Spearman).
TRANSPOSED = [("Summary", "summary_empathy", 0.11139276884126226, 0.22804013794275396, 0.22310786272466607),
              ("Both", "both_emotion", -0.033807462378891096, 0.05203837230666387, 0.03733156402818123)]
TOLERANCE = 5e-7  # printed to 6 decimals


def flat(result: dict, key: str) -> float:
    head, _, tail = key.partition(".")
    return result[head][tail] if tail else result[key]


def rows_for(label: str, results: dict, table) -> list[tuple]:
    rows = []
    for aspect, figures in table:
        for (stat, key), theirs in zip(STATS.items(), figures):
            ours = flat(results[aspect], key)
            rows.append((label, aspect, stat, theirs, ours))
    return rows


def urdu_long() -> pd.DataFrame:
    raw = pd.read_csv(REPO / "resources/data/urdu_stories/Urdu_Dataset_Annotation.csv")
    return pd.DataFrame([{"item_id": str(i), "annotator": f"person_{p}", "aspect": aspect,
                          "score": raw.at[i, f"Person_{p}_{aspect}_score"]}
                         for i in raw.index for p in range(1, 5) for aspect in URDU])


def main() -> None:
    english = pd.read_csv(REPO / "resources/data/english_reannotation/ratings.csv",
                          dtype={"item_id": str, "annotator": str, "aspect": str})
    all8 = reliability.analyse(english, SCALE, NO_BOOT, 42)[0]
    first6 = reliability.analyse(english[english["annotator"].isin(SIX)], SCALE, NO_BOOT, 42)[0]
    urdu = reliability.analyse(urdu_long(), SCALE, NO_BOOT, 42)[0]
    columns = list(zip(*ALL_8)), list(zip(*FIRST_6))
    rows = (rows_for("English, 8 annotators (agrement_score_all)", all8, zip(ASPECTS, columns[0]))
            + rows_for("English, first 6 annotators (agrement_score)", first6, zip(ASPECTS, columns[1]))
            + rows_for("Urdu, 4 annotators (agrement_score_all)", urdu, URDU.items()))
    print("| table | aspect | statistic | theirs | ours | match |")
    print("|---|---|---|---|---|---|")
    matched = 0
    for label, aspect, stat, theirs, ours in rows:
        ok = abs(theirs - ours) <= TOLERANCE
        matched += ok
        print(f"| {label} | {aspect} | {stat} | {theirs:.6f} | {ours:.6f} | {'yes' if ok else 'NO'} |")
    print(f"\n{matched} of {len(rows)} figures match to 6 decimals.\n")

    print("| cell | aspect | statistic | theirs | ours (as the workflow computes it) | the cell's input transposed | match |")
    print("|---|---|---|---|---|---|---|")
    for cell, aspect, alpha, pearson, spearman in TRANSPOSED:
        part = english[(english["aspect"] == aspect) & english["annotator"].isin(SIX)]
        matrix, _, _ = stats.reliability_matrix(part)  # annotators x items
        transposed = krippendorff.alpha(reliability_data=matrix.T, level_of_measurement="interval")
        result = first6[aspect]
        print(f"| {cell} | {aspect} | alpha (interval) | {alpha:.6f} | {result['krippendorff_alpha']['interval']:.6f} | "
              f"{transposed:.6f} | {'yes, as items-as-raters' if abs(transposed - alpha) <= 1e-9 else 'NO'} |")
        for stat, theirs, ours in (("Pearson", pearson, result["mean_pairwise_pearson"]),
                                   ("Spearman", spearman, result["mean_pairwise_spearman"])):
            print(f"| {cell} | {aspect} | {stat} | {theirs:.6f} | {ours:.6f} | - | "
                  f"{'yes' if abs(theirs - ours) <= 1e-9 else 'NO'} |")
    # The notebooks' rounding: int(n) + (n - int(n) >= 0.5), the same as ours for positive ratings
    values = np.array([1.0, 1.2, 1.5, 2.2, 2.5, 3.5, 4.0])
    theirs = [int(v) if v - int(v) < 0.5 else int(v) + 1 for v in values]
    assert list(stats.round_half_up(values).astype(int)) == theirs


if __name__ == "__main__":
    main()
