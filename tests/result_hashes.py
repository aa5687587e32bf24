"""The byte-level fingerprint of a finished tiny run (tests/configs/tiny.yaml): sha256 of every
result file except logs, benchmarks (timing) and the one file that records a duration (links to
the repository's docs count without the path that leads there).

    python tests/result_hashes.py DIR            # compare DIR's run with tests/result_hashes.json
    python tests/result_hashes.py DIR --record   # after a deliberate change of results: record it

A refactor must change no result (issue 16): tests/test_result_hashes.py checks the session's tiny
run against the recorded table. The table was recorded on this project's 2-core x86-64 CI kind of
machine; float kernels of another CPU family may differ in the last bit, and then so do the files.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

TABLE = Path(__file__).with_name("result_hashes.json")
# timing, not results: Snakemake's benchmark tables, the logs, and sentence-transformers' model
# card, which states the training time
SKIPPED_PREFIXES = ("logs/", "benchmarks/", "checkpoints/")
SKIPPED_FILES = {"similarity/contrastive/model/README.md"}
# The summary links the repository's docs relative to the run directory: that path says where the
# checkout and the run are, not what the results are.
REPO_LINK = re.compile(rb"\]\((?:\.\./)+[^)]*?/docs/([\w.-]+)\)")


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    return REPO_LINK.sub(rb"](REPO/docs/\1)", data) if path.suffix == ".md" else data


def result_hashes(run_dir: str | Path) -> dict[str, str]:
    """{path under results/: sha256} of a finished run."""
    root = Path(run_dir) / "results"
    hashes = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_file() and not name.startswith(SKIPPED_PREFIXES) and name not in SKIPPED_FILES:
            hashes[name] = hashlib.sha256(_content(path)).hexdigest()
    return hashes


def differences(run_dir: str | Path, recorded: dict[str, str]) -> list[str]:
    found = result_hashes(run_dir)
    problems = [f"missing: {name}" for name in sorted(set(recorded) - set(found))]
    problems += [f"not recorded: {name}" for name in sorted(set(found) - set(recorded))]
    problems += [f"different bytes: {name}" for name in sorted(set(found) & set(recorded))
                 if found[name] != recorded[name]]
    return problems


if __name__ == "__main__":
    run = Path(sys.argv[1])
    if "--record" in sys.argv:
        TABLE.write_text(json.dumps(result_hashes(run), indent=1, sort_keys=True) + "\n")
        print(f"recorded {TABLE}")
    else:
        problems = differences(run, json.loads(TABLE.read_text()))
        print("\n".join(problems) or "every result file is byte-identical")
        sys.exit(1 if problems else 0)
