"""Incremental reruns: after a completed run, a config or code change plans exactly the jobs it
touches, nothing more, nothing less.

All checks are dry runs (`snakemake -n`) on the session's completed tiny run (`tiny_run`), each
override an extra --configfile merged key by key on top of the tiny configuration. The planned
jobs are parsed from the dry run's per-job blocks (rule name + wildcards) and cross-checked
against its "Job stats" table, so a change in Snakemake's output format fails loudly instead of
silently planning nothing.

Snakemake's code trigger sees only a rule's `script:` file; rules add `code=code_of("SCRIPT")`
(rules/common.smk), a hash of the library modules the script imports, followed transitively
(empathy_workflow/core/code_version.py: computed, not kept by hand). Tests below check that an
edit to a library module reruns exactly the rules using it (on a copy of the repository), that a
comment in a plotting module reruns no training rule, and that every script rule fingerprints
its own script.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_CONFIG, merge_config

from empathy_workflow.core.code_version import import_closure

LIBRARY = "empathy_workflow"
# Params functions with these arguments are "derived" in Snakemake 9 (Rule._is_deriving_function):
# their values are not recorded, so the params trigger never sees them change.
DERIVED_ARGS = {"input", "output", "threads", "resources"}

JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")


# --------------------------------------------------------------------------------------------
# Dry runs and their plans


def dry_run(workdir: Path, *configfiles: Path, snakefile: Path = REPO / "Snakefile") -> str:
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
               "-n", "--configfile", str(TINY_CONFIG), *map(str, configfiles)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dry run failed ({result.returncode}):\n{output[-6000:]}"
    return output


def planned_jobs(output: str) -> set[tuple[str, frozenset]]:
    """{(rule, frozenset of wildcard items)} of a dry run's output, checked against Job stats."""
    jobs, current = [], None
    for line in output.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            current = [header.group(1), {}]
            jobs.append(current)
        elif current is not None and line.startswith("    wildcards: "):
            for item in line.split(": ", 1)[1].split(", "):
                key, value = item.split("=", 1)
                current[1][key] = value
        elif not line.strip():
            current = None

    stats, in_table = Counter(), False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
        elif in_table:
            row = STATS_ROW.match(line.strip())
            if row and row.group(1) == "total":
                break
            if row:
                stats[row.group(1)] += int(row.group(2))
    if "Nothing to be done" in output:
        assert not jobs and not stats, output[-3000:]
        return set()
    assert stats, f"no Job stats table in the dry run:\n{output[-3000:]}"
    assert Counter(rule for rule, _ in jobs) == stats, (
        f"per-job blocks {Counter(rule for rule, _ in jobs)} disagree with Job stats {stats}")
    plan = {(rule, frozenset(wildcards.items())) for rule, wildcards in jobs}
    assert len(plan) == len(jobs), "a job was listed twice"
    return plan


def job(rule: str, **wildcards: str) -> tuple[str, frozenset]:
    return rule, frozenset(wildcards.items())


def override(tmp_path: Path, settings: dict) -> Path:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def describe(plan) -> str:
    return "\n".join(sorted(f"  {rule} {dict(w)}" for rule, w in plan))


def assert_plan(plan, expected):
    assert plan == expected, (f"unexpected: \n{describe(plan - expected)}\n"
                              f"missing: \n{describe(expected - plan)}")


def tiny_settings() -> dict:
    """config.yaml merged with the tiny configuration (as Snakemake does, key by key)."""
    return merge_config(yaml.safe_load((REPO / "config.yaml").read_text()),
                 yaml.safe_load(TINY_CONFIG.read_text()))


REPORT = {job("report"), job("all")}


def preference_run_jobs(run: str) -> set:
    """A preference run's training and everything after it (its evaluation, the comparison)."""
    return {
        job("empo_preference", run=run),
        job("empo_training_curves", adapter=run),
        job("empo_generate", variant=run),
        job("empo_evaluate", variant=run),
        job("empo_lm_eval", variant=run),
        job("empo_metrics", variant=run),
        job("empo_significance"),
    } | REPORT


AGREEMENT = {
    job("agreement_analysis", dataset="urdu_stories"),
    job("agreement_analysis", dataset="english_reannotation"),
    job("agreement_aggregate_scores"),
    job("agreement_cross_culture"),
} | REPORT


# --------------------------------------------------------------------------------------------
# Config changes after a completed run


def test_completed_run_has_nothing_to_do(tiny_run):
    assert planned_jobs(dry_run(tiny_run)) == set()


def test_jobs_run_with_a_fixed_hash_seed(tiny_run):
    """Every job's Python starts with PYTHONHASHSEED=0 (rules/common.smk): bert-score orders
    sentences through a set, and a per-process hash seed changed its scores from run to run."""
    logs = [p for p in (tiny_run / "results" / "logs").rglob("*.log") if "thread(s), seed" in p.read_text()]
    assert len(logs) > 20
    for log in logs:
        assert "hash seed 0" in log.read_text(), log


def test_preference_beta_reruns_only_that_run(tiny_run, tmp_path):
    settings = tiny_settings()
    from empathy_workflow.core.grids import resolve_runs

    runs = resolve_runs(settings["empo"]["preference"])
    run = sorted(runs)[0]
    beta = float(runs[run]["beta"]) * 2 + 0.05
    extra = override(tmp_path, {"empo": {"preference": {"runs": {run: {"beta": beta}}}}})
    assert_plan(planned_jobs(dry_run(tiny_run, extra)), preference_run_jobs(run))


def test_rejected_per_prompt_reruns_pairs_and_downstream(tiny_run, tmp_path):
    settings = tiny_settings()
    rejected = int(settings["empo"]["pairs"]["rejected_per_prompt"]) + 1
    extra = override(tmp_path, {"empo": {"pairs": {"rejected_per_prompt": rejected}}})
    expected = {job("empo_pairs", split=s) for s in ("train", "valid", "test")}
    from empathy_workflow.core.grids import resolve_runs

    for run in resolve_runs(settings["empo"]["preference"]):
        expected |= preference_run_jobs(run)
    # not SFT nor the conversation subsets (they read only pairs.max_conversations), not similarity,
    # not agreement
    assert_plan(planned_jobs(dry_run(tiny_run, extra)), expected)


def test_agreement_bootstrap_reruns_agreement_and_report_only(tiny_run, tmp_path):
    bootstrap = int(tiny_settings()["agreement"]["bootstrap"]) + 7
    extra = override(tmp_path, {"agreement": {"bootstrap": bootstrap}})
    assert_plan(planned_jobs(dry_run(tiny_run, extra)), AGREEMENT)


# --------------------------------------------------------------------------------------------
# Code changes: a shared library module reruns the rules that import it


def _link_tree(source: Path, target: Path):
    """Hard links where possible (no data copied; the dry runs never write outputs), mtimes kept."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, symlinks=True, copy_function=link)


@pytest.fixture(scope="module")
def relocated_run(tiny_run, tmp_path_factory):
    """A copy of the repository and of the completed tiny run, as if the run had been made with
    the copy: results/ linked with their mtimes, Snakemake's metadata with the repository's
    absolute paths (recorded inputs and params) moved to the copy's."""
    base = tmp_path_factory.mktemp("relocated")
    repo, workdir = base / "repo", base / "run"
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, text=True)
    if listing.returncode == 0:
        for name in filter(None, listing.stdout.split("\0")):
            source = REPO / name
            if source.is_file():
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, repo / name)  # keeps mtimes: scripts stay older than outputs
        # folders too (an input folder, like the MMLU one, is compared by its own mtime); deepest
        # first, as filling a folder touches it
        for folder in sorted((p for p in repo.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            shutil.copystat(REPO / folder.relative_to(repo), folder)
    else:  # not a git checkout (e.g. an unpacked archive)
        shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(
            ".git", ".venv", "results", ".snakemake", "__pycache__", ".pytest_cache"))
    workdir.mkdir()
    _link_tree(tiny_run / "results", workdir / "results")
    metadata = tiny_run / ".snakemake" / "metadata"
    (workdir / ".snakemake" / "metadata").mkdir(parents=True)
    for record in metadata.iterdir():
        text = record.read_text().replace(str(REPO), str(repo))
        target = workdir / ".snakemake" / "metadata" / record.name
        target.write_text(text)
        shutil.copystat(record, target)
    return repo, workdir


def test_relocated_run_is_complete(relocated_run):
    # the premise of the code-change tests: the copy sees the run as up to date
    repo, workdir = relocated_run
    assert planned_jobs(dry_run(workdir, snakefile=repo / "Snakefile")) == set()


EVALUATION = {job("epitome_classifier"), job("epitome_quality"), job("empo_significance")} | REPORT
VARIANTS = ["base", "sft", *tiny_settings()["empo"]["preference"]["runs"]]
ADAPTERS = ["sft", *tiny_settings()["empo"]["preference"]["runs"]]
SIMILARITY_FIGURES = {job("similarity_scatter", method=method, testset=testset)
                      for method in tiny_settings()["similarity"]["methods"]
                      for testset in tiny_settings()["similarity"]["test_sets"]}
CURVES = {job("empo_training_curves", adapter=adapter) for adapter in ADAPTERS}
# rules that train or score models: a figure's style must never rerun them
EXPENSIVE = {"similarity_train_contrastive", "similarity_train_llm", "similarity_predict", "empo_sft",
             "empo_preference", "empo_generate", "empo_evaluate", "empo_lm_eval", "epitome_classifier",
             "prepare_model", "empo_pairs"}


@pytest.mark.parametrize("module, expected", [
    # the EPITOME classifier: its training and every evaluation that predicts with it
    ("empo/epitome", EVALUATION | {job(rule, variant=variant)
                                   for rule in ("empo_evaluate", "empo_metrics") for variant in VARIANTS}),
    # a figure module of one paper: only its figures are drawn again
    ("empo/figures", CURVES | {job("all")}),
    # the shared plotting module: every rule that draws, and no rule that trains or scores
    ("core/plots", AGREEMENT | SIMILARITY_FIGURES | CURVES),
])
def test_library_edit_reruns_its_rules(relocated_run, module, expected):
    repo, workdir = relocated_run
    path = repo / "workflow_scripts" / LIBRARY / f"{module}.py"
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit: a comment only\n")
        plan = planned_jobs(dry_run(workdir, snakefile=repo / "Snakefile"))
        assert_plan(plan, expected)
        if module.endswith(("plots", "figures")):
            assert not {rule for rule, _ in plan} & EXPENSIVE
    finally:
        path.write_bytes(original)
    assert planned_jobs(dry_run(workdir, snakefile=repo / "Snakefile")) == set()


# --------------------------------------------------------------------------------------------
# Static guarantees: code_version lists are true, params reach the params trigger


def rule_blocks() -> dict[str, str]:
    """{rule name: its text} over the Snakefile and rules/*.smk (a block runs to the next rule)."""
    blocks = {}
    for smk in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"^[ \t]*rule (\w+):", text, re.M)]
        for (start, name), (end, _) in zip(starts, starts[1:] + [(len(text), None)]):
            assert name not in blocks, f"rule {name} defined twice"
            blocks[name] = text[start:end]
    return blocks


def listed_rules(workdir: Path) -> set[str]:
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                             "--directory", str(workdir), "--list-rules", "--configfile", str(TINY_CONFIG)],
                            cwd=workdir, capture_output=True, text=True, timeout=120, check=True)
    return {line.strip() for line in result.stdout.splitlines() if re.fullmatch(r"\s*\w+\s*", line)}


def test_import_closure_on_known_cases():
    """Hand-checked: generation reaches dialogues and io, and training lazily (which sets up
    trainers in core); the lm-eval runner reaches its package's leaderboard module; runtime
    imports gpu_slots lazily; a training script never reaches a plotting module."""
    package = REPO / "workflow_scripts" / LIBRARY

    def closure(script: str) -> set[str]:
        return {p.relative_to(package).as_posix() for p in import_closure(REPO / "workflow_scripts" / script)}

    assert {"empo/generation.py", "empo/dialogues.py", "core/io.py", "empo/training.py",
            "core/trainer_setup.py"} <= closure("empo_generate.py")
    assert closure("empo_lm_eval.py") == {
        "__init__.py", "core/__init__.py", "core/io.py", "core/runtime.py", "core/gpu_slots.py",
        "empo/__init__.py", "empo/lm_eval_tasks/__init__.py", "empo/lm_eval_tasks/runner.py",
        "empo/lm_eval_tasks/leaderboard.py"}
    for script in ("empo_sft.py", "empo_preference.py", "similarity_train_llm.py",
                   "similarity_train_contrastive.py", "similarity_predict.py", "epitome_classifier.py"):
        assert not {"core/plots.py", "empo/figures.py"} & closure(script), script


def test_every_script_rule_fingerprints_its_own_script(tmp_path):
    blocks = rule_blocks()
    # every rule Snakemake sees was parsed (a new .smk layout cannot hide rules from this test)
    listed = listed_rules(tmp_path)
    assert listed <= set(blocks), listed - set(blocks)
    problems = []
    for name, block in blocks.items():
        script = re.search(r"^\s*script:\s*\n?\s*\"([^\"]+)\"", block, re.M)
        if not script:
            continue
        call = re.search(r"\bcode=code_of\(\"([^\"]+)\"\)", block)
        if not call:
            problems.append(f"rule {name}: a script rule without code=code_of(...)")
        elif call.group(1) != Path(script.group(1)).name:
            problems.append(f"rule {name}: code_of({call.group(1)!r}) but its script is {script.group(1)}")
    assert not problems, "\n".join(problems)


def test_params_are_seen_by_the_params_trigger():
    """No params function derived from input/output/threads/resources (Snakemake 9 does not
    record those values, so a change would not rerun the rule)."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    functions = {m.group(1): {a.strip().split("=")[0] for a in m.group(2).split(",")}
                 for m in re.finditer(r"^def (\w+)\(([^)]*)\)", text, re.M)}
    problems = []
    for name, block in rule_blocks().items():
        params = re.search(r"^([ \t]*)params:\n((?:\1[ \t]+.*\n|[ \t]*\n)*)", block, re.M)
        if not params:
            continue
        body = params.group(2)
        for args in re.findall(r"lambda\s+([^:]*):", body):
            if DERIVED_ARGS & {a.strip() for a in args.split(",")}:
                problems.append(f"rule {name}: params lambda taking ({args})")
        for function in re.findall(r"=\s*(\w+),?\s*$", body, re.M):
            if DERIVED_ARGS & functions.get(function, set()):
                problems.append(f"rule {name}: params function {function} takes {functions[function]}")
    assert not problems, "\n".join(problems)


def test_scripts_read_settings_from_params_only():
    """A script reading snakemake.config would bypass the params trigger."""
    offenders = [p.name for p in sorted((REPO / "workflow_scripts").glob("*.py"))
                 if re.search(r"snakemake\.config\b", p.read_text())]
    assert not offenders, f"read snakemake.params instead of snakemake.config: {offenders}"
