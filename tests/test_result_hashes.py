"""A refactor changes no result: every result file of the session's tiny run (logs and timing
aside) has the bytes recorded in tests/result_hashes.json (tests/result_hashes.py says how to
compare a run by hand and how to record a deliberate change)."""

from __future__ import annotations

import json

import result_hashes


def test_tiny_run_results_are_byte_identical_to_the_recorded_ones(tiny_run):
    problems = result_hashes.differences(tiny_run, json.loads(result_hashes.TABLE.read_text()))
    assert not problems, ("the tiny run's results differ from tests/result_hashes.json (if the change is "
                          "deliberate, record it: python tests/result_hashes.py DIR --record):\n"
                          + "\n".join(problems[:40]))


def test_the_comparison_sees_a_changed_byte_and_a_missing_file(tmp_path):
    results = tmp_path / "results"
    (results / "logs").mkdir(parents=True)
    (results / "a.json").write_text("{}\n")
    (results / "logs" / "x.log").write_text("timing 1 s\n")
    recorded = result_hashes.result_hashes(tmp_path)
    assert list(recorded) == ["a.json"]  # logs are not results
    assert result_hashes.differences(tmp_path, recorded) == []
    (results / "a.json").write_text("{} \n")
    (results / "b.csv").write_text("x\n")
    assert result_hashes.differences(tmp_path, {**recorded, "gone.png": "0"}) == [
        "missing: gone.png", "not recorded: b.csv", "different bytes: a.json"]


def test_a_link_to_the_repository_counts_without_its_path(tmp_path):
    page = tmp_path / "results" / "report" / "summary.md"
    page.parent.mkdir(parents=True)
    page.write_text("see [docs/fidelity.md](../../../../main/docs/fidelity.md).\n")
    here = result_hashes.result_hashes(tmp_path)
    page.write_text("see [docs/fidelity.md](../../../../../ci/checkout/docs/fidelity.md).\n")
    assert result_hashes.result_hashes(tmp_path) == here
    page.write_text("see [docs/fidelity.md](../../../../main/docs/cluster.md).\n")
    assert result_hashes.result_hashes(tmp_path) != here
