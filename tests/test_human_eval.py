"""Human evaluation of EmPO replies: the blinded sheets, the rating page filled in a real headless
browser (Debian's chromium through selenium/chromedriver), the completed sheets read back through
the validation, the results (with an LLM judge's hand-made ratings) and the report section; and a
clear error for every kind of bad rating."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import snakemake
from empathy_workflow.report import sections, summary
from empathy_workflow.empo import human_eval, human_eval_ratings, human_eval_results
from empathy_workflow.core.io import InputError, write_jsonl
from test_evaluation import fixture_generations

MODELS = ["base", "dpo"]
SETTINGS = {"models": MODELS, "n_items": 6, "annotators": 4, "overlap": 2}
DIMENSIONS = human_eval.resolve_settings(SETTINGS, ["base", "sft", "dpo"])["dimensions"]


def write_generations(directory: Path, n: int = 12) -> dict[str, str]:
    paths = {}
    for model, records in fixture_generations(n).items():
        path = directory / "results" / "empo" / "generations" / f"{model}.jsonl"
        write_jsonl(path, records)
        paths[model] = str(path)
    return paths


@pytest.fixture(scope="module")
def evaluation_set(tmp_path_factory):
    directory = tmp_path_factory.mktemp("human_eval")
    settings = human_eval.resolve_settings(SETTINGS, ["base", "sft", "dpo"])
    items, key, assignments = human_eval.build_evaluation_set(write_generations(directory), settings, 42)
    return settings, items, key, assignments


# ---------------------------------------------------------------------------------------------
# The sheets


def test_evaluation_set_is_blinded_balanced_and_seeded(evaluation_set, tmp_path):
    settings, items, key, assignments = evaluation_set
    # the same 6 prompts for both models, one item per (prompt, model)
    assert len(items) == 12 and items["prompt_id"].nunique() == 6
    joined = items.merge(key, on="item_id")
    assert all(sorted(models) == MODELS for models in joined.groupby("prompt_id")["model"].apply(list))
    assert "model" not in items.columns and list(key.columns) == ["item_id", "model"]
    # every item rated by exactly `overlap` different annotators, loads equal, one reply per prompt each
    per_item = assignments.groupby("item_id")["annotator"].nunique()
    assert set(per_item) == {2} and set(assignments.groupby("annotator").size()) == {6}
    seen = assignments.merge(items, on="item_id").groupby(["annotator", "prompt_id"]).size()
    assert seen.max() == 1
    # readable prompt text, no system message
    assert items["prompt"].str.startswith("Speaker: ").all()
    # seeded: the same seed gives the same set, another seed another one
    paths = write_generations(tmp_path)
    again = human_eval.build_evaluation_set(paths, settings, 42)
    assert again[0].equals(items) and again[1].equals(key) and again[2].equals(assignments)
    other = human_eval.build_evaluation_set(paths, settings, 7)
    assert not other[1].equals(key)
    # the page carries the items and the dimensions but no model name
    counts = human_eval.write_sheets(tmp_path / "sheets", items, assignments, settings["annotators"],
                                     settings["dimensions"])
    assert counts == {"a01": 6, "a02": 6, "a03": 6, "a04": 6}
    page = (tmp_path / "sheets" / "a01.html").read_text()
    payload = json.loads(page.split('type="application/json">')[1].split("</script>")[0])
    assert [d["name"] for d in payload["dimensions"]] == list(human_eval.EMPO_DIMENSIONS)
    assert '"model"' not in page and "http" not in page.replace("http-equiv", "")
    sheet = pd.read_csv(tmp_path / "sheets" / "a01.csv", keep_default_na=False)
    assert list(sheet.columns) == ["item_id", "annotator", "prompt", "reply", *human_eval.EMPO_DIMENSIONS]
    assert (sheet[list(human_eval.EMPO_DIMENSIONS)] == "").all().all()


def test_page_keeps_any_reply_text_as_data(evaluation_set):
    settings, items, key, assignments = evaluation_set
    table = human_eval.sheet_table(items, assignments, "a01", DIMENSIONS)
    hostile = 'Sure.</script><script>alert("x")</script> & <b>bold</b>'
    table.loc[0, "reply"] = hostile
    page = human_eval.sheet_html(table, "a01", DIMENSIONS)
    assert "</script><script>" not in page and page.count("</script>") == 2  # the page's own two
    payload = json.loads(page.split('type="application/json">')[1].split("</script>")[0])
    assert payload["items"][0]["reply"] == hostile and payload["annotator"] == "a01"


def test_settings_errors_name_the_key():
    available = ["base", "sft", "dpo"]
    with pytest.raises(InputError, match=r"human_eval.models: 'kto'"):
        human_eval.resolve_settings({**SETTINGS, "models": ["base", "kto"]}, available)
    with pytest.raises(InputError, match=r"human_eval.overlap: 5 annotators per item, but only 4"):
        human_eval.resolve_settings({**SETTINGS, "overlap": 5}, available)
    with pytest.raises(InputError, match=r"dimensions.fit: step 2 does not divide"):
        human_eval.resolve_settings({**SETTINGS, "dimensions": {"fit": {"label": "x", "min": 1, "max": 4, "step": 2}}},
                                    available)
    with pytest.raises(InputError, match="reserved for the LLM judge"):
        human_eval.resolve_settings({**SETTINGS, "annotators": ["a", "llm_judge"]}, available)
    likert = human_eval.resolve_settings({**SETTINGS, "dimensions": {"fit": {"label": "x", "min": 1, "max": 5}}},
                                         available)["dimensions"]["fit"]
    assert likert["widget"] == "likert" and likert["step"] == 1
    assert human_eval.resolve_settings(SETTINGS, available)["dimensions"]["emotion"]["widget"] == "slider"


def test_too_few_prompts_is_a_clear_error(tmp_path):
    settings = human_eval.resolve_settings({**SETTINGS, "n_items": 13}, ["base", "sft", "dpo"])
    with pytest.raises(InputError, match=r"n_items: 13 prompts asked for, but only 12"):
        human_eval.build_evaluation_set(write_generations(tmp_path), settings, 0)


# ---------------------------------------------------------------------------------------------
# Bad completed sheets: one clear error per rule, naming the file and the row


def _write(path: Path, rows: list[list]) -> Path:
    path.write_text("item_id,annotator,dimension,score\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("row, message", [
    (["item9999", "a01", "emotion", 50], r"row 3: unknown item 'item9999'"),
    (["{item}", "a01", "emotion", 101], r"row 3: score 101 for dimension 'emotion' is off the scale \(0 to 100"),
    (["{item}", "a01", "emotion", 50.5], r"row 3: score 50.5 .* off the scale"),
    (["{item}", "a01", "coherence", 2], r"row 3: score 2 for dimension 'coherence' is off the scale \(0 to 1"),
    (["{item}", "a01", "emotion", "high"], r"row 3: score 'high' for dimension 'emotion' is not a number"),
    (["{item}", "", "emotion", 50], r"row 3: missing annotator id"),
    (["{item}", "a01", "empathy", 50], r"row 3: unknown dimension 'empathy' \(the configured dimensions: appropr"),
    (["{item}", "a09", "emotion", 50], r"row 3: unknown annotator 'a09'"),
    (["{other}", "a01", "emotion", 50], r"row 3: item '\w+' is not on the sheet of annotator 'a01'"),
    (["{item}", "a01", "appropriateness", 60], r"duplicate rating: annotator 'a01' rated item '\w+' on "
                                               r"'appropriateness' more than once \(.*bad.csv: row 2; .*bad.csv: row 3\)"),
])
def test_bad_ratings_are_named(evaluation_set, tmp_path, row, message):
    settings, items, key, assignments = evaluation_set
    mine = assignments.loc[assignments["annotator"] == "a01", "item_id"].tolist()
    other = sorted(set(items["item_id"]) - set(mine))[0]
    row = [str(v).format(item=mine[0], other=other) for v in row]
    path = _write(tmp_path / "bad.csv", [[mine[0], "a01", "appropriateness", 70], row])
    with pytest.raises(InputError, match=message) as error:
        human_eval_ratings.read_ratings([path], DIMENSIONS, items["item_id"], assignments)
    assert "bad.csv" in str(error.value)


def test_sheet_formats_missing_scores_and_duplicates_across_files(evaluation_set, tmp_path):
    settings, items, key, assignments = evaluation_set
    mine = assignments.loc[assignments["annotator"] == "a02", "item_id"].tolist()
    # a filled CSV sheet (wide), one cell left empty: a missing rating, counted
    sheet = human_eval.sheet_table(items, assignments, "a02", DIMENSIONS)
    for name in DIMENSIONS:
        sheet[name] = "1"
    sheet.loc[0, "emotion"] = ""
    sheet.to_csv(tmp_path / "a02.csv", index=False)
    ratings, counts = human_eval_ratings.read_ratings([tmp_path / "a02.csv"], DIMENSIONS, items["item_id"], assignments)
    assert len(ratings) == 6 * 5 - 1 and counts["empty_scores"] == 1
    assert human_eval_ratings.completion(ratings, assignments, DIMENSIONS)["a02"] == {"given": 29, "expected": 30}
    # the same rating again in a second (long) file is a duplicate naming both files
    _write(tmp_path / "again.csv", [[mine[1], "a02", "naturalness", 40]])
    with pytest.raises(InputError, match=r"duplicate rating.*a02.csv: row 3; .*again.csv: row 2"):
        human_eval_ratings.read_ratings(human_eval_ratings.rating_files(tmp_path), DIMENSIONS, items["item_id"],
                                        assignments)
    # neither layout: a clear error naming the columns
    (tmp_path / "odd.csv").write_text("id,value\n1,2\n")
    with pytest.raises(InputError, match=r"odd.csv: not a ratings sheet"):
        human_eval_ratings.read_sheet(tmp_path / "odd.csv", DIMENSIONS)
    with pytest.raises(InputError, match="holds no .csv"):
        human_eval_ratings.rating_files(_empty_dir(tmp_path))
    # the judge's file may hold llm_judge only
    _write(tmp_path / "judge.csv", [[mine[0], "a02", "emotion", 50]])
    with pytest.raises(InputError, match=r"judge.csv: row 2: annotator 'a02'; this file holds 'llm_judge'"):
        human_eval_ratings.read_ratings([tmp_path / "judge.csv"], DIMENSIONS, items["item_id"],
                                        annotator=human_eval.JUDGE_ANNOTATOR)


def _empty_dir(base: Path) -> Path:
    path = base / "empty"
    path.mkdir()
    return path


# ---------------------------------------------------------------------------------------------
# Results from known ratings


def simulated_ratings(items, key, assignments, seed=0, noise=8.0, judge=False) -> pd.DataFrame:
    """Ratings with a known truth: dpo's replies 20 points better than base's, each reply with its
    own quality, annotators adding noise; coherence 1 unless the reply is poor."""
    truth = np.random.default_rng(0)  # the replies' quality: the same for every rater
    quality = {item: truth.normal(45 + (20 if model == "dpo" else 0), 12)
               for item, model in zip(key["item_id"], key["model"])}
    rng = np.random.default_rng(seed)
    rows = []
    raters = [("llm_judge", item) for item in items["item_id"]] if judge else zip(assignments["annotator"],
                                                                                     assignments["item_id"])
    for annotator, item in raters:
        for name in DIMENSIONS:
            value = quality[item] + rng.normal(0, noise)
            score = float(value > 40) if name == "coherence" else float(np.clip(round(value), 0, 100))
            rows.append({"item_id": item, "annotator": annotator, "dimension": name, "score": score})
    return pd.DataFrame(rows)


def test_results_find_the_better_model_and_agreement(evaluation_set):
    settings, items, key, assignments = evaluation_set
    ratings = simulated_ratings(items, key, assignments)
    judge = simulated_ratings(items, key, assignments, seed=1, judge=True)
    significance = {"permutations": 200, "bootstrap": 200, "confidence": 0.95}
    result = human_eval_results.results(ratings, key, items, settings, significance,
                                        {"bootstrap": 20, "confidence": 0.95}, 42, judge)
    for name in ("appropriateness", "emotion", "naturalness", "engagement"):
        base, dpo = result["models"]["base"][name], result["models"]["dpo"][name]
        assert dpo["mean"] > base["mean"] + 8 and base["ci"][0] <= base["mean"] <= base["ci"][1]
        assert base["n_replies"] == 6 and base["n_ratings"] == 12
    comparisons = {c["dimension"]: c for c in result["comparisons"]}
    emotion = comparisons["emotion"]
    assert (emotion["a"], emotion["b"], emotion["n_prompts"]) == ("base", "dpo", 6)
    assert emotion["difference"] < 0 and emotion["p_value_holm"] >= emotion["p_value"]
    assert emotion["wins_a"] + emotion["ties"] + emotion["wins_b"] == 6
    assert emotion["win_rate_a"] == pytest.approx((emotion["wins_a"] + 0.5 * emotion["ties"]) / 6)
    # agreement through the agreement stage: every alpha level, pairwise statistics, the ceiling
    agreement = result["agreement"]["emotion"]
    assert set(agreement["krippendorff_alpha"]) == {"nominal", "ordinal", "interval", "ratio"}
    assert agreement["krippendorff_alpha"]["interval"] > 0.4 and agreement["n_items"] == 12
    assert agreement["n_annotators"] == 4 and "expected_correlation" in agreement["human_ceiling"]
    assert "pearson" in agreement["pairwise"]
    # the judge rates like a human: alpha with it stays close, it tracks the human mean
    judged = result["llm_judge"]["emotion"]
    assert judged["n_items"] == 12 and judged["judge_vs_human_mean"]["pearson"] > 0.6
    assert abs(judged["alpha_with_judge"]["interval"] - judged["alpha_humans"]["interval"]) < 0.2
    # a judge whose scores are shuffled across the replies pulls alpha down and tracks nothing
    shuffled = judge.assign(score=judge.groupby("dimension")["score"].transform(
        lambda scores: np.random.default_rng(3).permutation(scores.to_numpy())))
    careless = human_eval_results.judge_agreement(ratings, shuffled, DIMENSIONS, {"bootstrap": 0, "confidence": 0.95},
                                                  42)["appropriateness"]
    assert careless["alpha_with_judge"]["interval"] < careless["alpha_humans"]["interval"] - 0.1
    assert abs(careless["judge_vs_human_mean"]["pearson"]) < 0.5
    text = human_eval_results.markdown(result)
    assert "| dpo |" in text and "LLM judge" in text and "win rate of A" in text
    without = human_eval_results.results(ratings, key, items, settings, significance,
                                         {"bootstrap": 0, "confidence": 0.95}, 42)
    assert "llm_judge" not in without and without["models"] == result["models"]


# ---------------------------------------------------------------------------------------------
# The round trip through the workflow, with the page filled in a real browser

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def browser(download_dir: Path):
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def fill_page(driver, page: Path, wanted: pd.DataFrame) -> None:
    """Rate every conversation as `wanted` says, the way a person does: keys on the sliders,
    clicks on the radio buttons, Next; then back once to change a rating; then Download."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(page.as_uri())
    scores = wanted.set_index(["item_id", "dimension"])["score"]
    total = len(driver.execute_script("return SHEET.items"))
    for position in range(total):
        item = driver.find_element(By.ID, "conversation").get_attribute("data-item")
        for name, dimension in DIMENSIONS.items():
            score = int(scores[(item, name)])
            if dimension["widget"] == "slider":
                slider = driver.find_element(By.ID, f"dim-{name}")
                slider.send_keys(Keys.HOME + Keys.ARROW_RIGHT * score)
                assert driver.find_element(By.ID, f"value-{name}").text == str(score)
            else:
                driver.find_element(By.ID, f"dim-{name}-{score}").click()
        assert driver.find_element(By.ID, "progress").text.startswith(f"{position + 1} of {total}")
        if position < total - 1:
            driver.find_element(By.ID, "next").click()
    # back to the first conversation: its ratings are still there; change one
    for _ in range(total - 1):
        driver.find_element(By.ID, "prev").click()
    first = driver.find_element(By.ID, "conversation").get_attribute("data-item")
    assert driver.find_element(By.ID, "value-emotion").text == str(int(scores[(first, "emotion")]))
    driver.find_element(By.ID, "dim-emotion").send_keys(Keys.END)
    driver.find_element(By.ID, "download").click()


def wait_for(path: Path, timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return path
        time.sleep(0.1)
    raise AssertionError(f"the page's download {path} did not appear in {timeout} s")


def test_round_trip_sheets_browser_results_report(tmp_path):
    write_generations(tmp_path)
    config = tmp_path / "human.yaml"
    base = ("empo:\n  evaluation:\n    significance: {permutations: 200, bootstrap: 200}\n"
            "  human_eval:\n    models: [base, dpo]\n    n_items: 6\n    annotators: 4\n    overlap: 2\n")
    config.write_text(base)
    snakemake(tmp_path, "--cores", "1", "results/empo/human_eval/key.csv", "--allowed-rules", "empo_human_sheets",
              configfiles=[config])
    out = tmp_path / "results" / "empo" / "human_eval"
    items = pd.read_csv(out / "items.csv", dtype=str)
    key = pd.read_csv(out / "key.csv", dtype=str)
    assignments = pd.read_csv(out / "assignments.csv", dtype=str)
    wanted = simulated_ratings(items, key, assignments)

    downloads, returned = tmp_path / "downloads", tmp_path / "returned"
    downloads.mkdir()
    returned.mkdir()
    driver = browser(downloads)
    try:
        for annotator in ("a01", "a02", "a03", "a04"):
            fill_page(driver, out / "sheets" / f"{annotator}.html", wanted[wanted["annotator"] == annotator])
            saved = wait_for(downloads / f"{annotator}_ratings.csv")
            shutil.move(saved, returned / saved.name)
    finally:
        driver.quit()

    # what the page saved is exactly what was entered (plus the one changed rating)
    a01 = pd.read_csv(returned / "a01_ratings.csv", dtype={"item_id": str})
    assert list(a01.columns) == ["item_id", "annotator", "dimension", "score"] and len(a01) == 6 * 5
    first = assignments[(assignments["annotator"] == "a01") & (assignments["position"] == "1")]["item_id"].iloc[0]
    merged = a01.merge(wanted, on=["item_id", "annotator", "dimension"], suffixes=("", "_wanted"))
    changed = (merged["item_id"] == first) & (merged["dimension"] == "emotion")
    assert (merged.loc[~changed, "score"] == merged.loc[~changed, "score_wanted"]).all()
    assert merged.loc[changed, "score"].tolist() == [100]

    # the judge's ratings, hand-made, where the other rule would write them
    judge = simulated_ratings(items, key, assignments, seed=1, judge=True)
    judge.to_csv(out / "llm_judge_ratings.csv", index=False)
    # an endpoint the rule never calls: the judge's ratings are already in place (hand-made above)
    config.write_text(base + f"    ratings: {returned}\n    llm_judge: {{base_url: 'http://127.0.0.1:9/v1', "
                      "model: judge, api_key_env: null, cache: results/cache/judge.jsonl}\n")
    snakemake(tmp_path, "--cores", "1", "results/empo/human_eval/results.json", "--allowed-rules",
              "empo_human_results", configfiles=[config])
    result = json.loads((out / "results.json").read_text())
    assert result["ratings"]["ratings"] == 4 * 6 * 5 and result["ratings"]["annotators"] == ["a01", "a02", "a03", "a04"]
    assert result["models"]["dpo"]["engagement"]["mean"] > result["models"]["base"]["engagement"]["mean"]
    assert result["agreement"]["naturalness"]["n_annotators"] == 4
    assert set(result["llm_judge"]) == set(DIMENSIONS)
    section = sections.human_eval_section([out / "results.md"], tmp_path / "results" / "report")
    assert section.startswith("## EmPO: human evaluation") and "### Human evaluation of EmPO replies" in section
    assert "| base |" in section and "alpha interval, with judge" in section

    # a bad sheet stops the rule with its file and row, and leaves no result behind
    (returned / "a01_ratings.csv").write_text((returned / "a01_ratings.csv").read_text() + f"{first},a01,emotion,250\n")
    failed = snakemake(tmp_path, "--cores", "1", "results/empo/human_eval/results.json", "--allowed-rules",
                       "empo_human_results", configfiles=[config], check=False)
    assert failed.returncode != 0
    log = (tmp_path / "results" / "logs" / "empo" / "human_results.log").read_text()
    assert "a01_ratings.csv: row 32: score 250 for dimension 'emotion' is off the scale" in log
    assert not (out / "results.json").exists()


def test_off_by_default(tmp_path):
    listed = snakemake(tmp_path, "-n").stdout
    assert "empo_human" not in listed


def test_bad_settings_stop_the_dry_run(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("empo:\n  human_eval: {models: [base, kto], n_items: 4, annotators: 2, overlap: 2}\n")
    failed = snakemake(tmp_path, "-n", configfiles=[config], check=False)
    assert failed.returncode != 0
    assert "config key empo.human_eval.models: 'kto' is not a generation model" in failed.stdout + failed.stderr
    config.write_text("empo:\n  human_eval: {models: [base, dpo], n_items: 4, annotators: 2, overlap: 2, "
                      "ratings: returned_sheets}\n")
    failed = snakemake(tmp_path, "-n", configfiles=[config], check=False)
    assert failed.returncode != 0
    assert "config key empo.human_eval.ratings: returned_sheets" in failed.stdout + failed.stderr
    assert not (tmp_path / "results").exists()


def test_report_embeds_the_human_evaluation(tmp_path):
    """build_summary puts results.md under its own heading when the rule ran, and nothing when not."""
    results = tmp_path / "results"
    table = results / "empo" / "human_eval" / "results.md"
    table.parent.mkdir(parents=True)
    table.write_text("# Human evaluation of EmPO replies\n\n| model | emotion |\n|---|---|\n| dpo | 70.000 |\n")
    metrics = results / "empo" / "eval" / "base" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"bertscore": {"f1": 0.8}}))
    inputs = {key: [] for key in ("agreement", "similarity", "curves", "pair_stats", "epitome", "splits")}
    inputs.update(empo=[str(metrics)], aggregate=[str(results / "none.json")],
                  cross_culture=[str(results / "none.json")], significance=[str(results / "none.json")])
    output = results / "report" / "summary.md"
    assert "human evaluation" not in summary.build_summary({**inputs, "human_eval": []}, {"seed": 1}, output)
    text = summary.build_summary({**inputs, "human_eval": [str(table)]}, {"seed": 1}, output)
    assert "## EmPO: human evaluation\n\n### Human evaluation of EmPO replies" in text and "| dpo | 70.000 |" in text
