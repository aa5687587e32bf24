import hashlib
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

REPO = Path(workflow.basedir)
SCRIPTS = REPO / "workflow_scripts"
# Rule scripts import the shared library (workflow_scripts/empathy_workflow); jobs inherit this,
# locally and on cluster nodes alike.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(SCRIPTS), os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, str(SCRIPTS))

from empathy_workflow.config import ConfigError, resolve_path, validate_config


try:
    validate_config(config, REPO / "schemas" / "config.schema.yaml", REPO)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


wildcard_constraints:
    model=r"[A-Za-z0-9_-]+",
    run=r"[A-Za-z0-9_-]+",
    split=r"train|valid|test",
    dataset=r"[A-Za-z0-9_-]+",


SEED = config["seed"]


def dataset_path(dataset, key):
    """A dataset entry resolved against the working directory, then the repository root."""
    value = config["datasets"][dataset][key]
    return None if value is None else resolve_path(value, REPO)


def local_inputs(*paths):
    """Input files that Snakemake should track: local ones only (remote sources are fetched in-job)."""
    return [p for p in paths if p is not None and not p.startswith(("http://", "https://", "hf:"))]


def code_version(*modules):
    """Hash of the library modules a rule imports. Snakemake's code trigger sees only the script
    itself; as a param, this makes an edit to a shared helper rerun the rules that use it."""
    digest = hashlib.sha256()
    for module in ("io", "runtime") + modules:
        digest.update((SCRIPTS / "empathy_workflow" / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def model_dir(name):
    return f"results/models/{name}"


PREFERENCE_RUNS = list(config["empo"]["preference"]["runs"])
EMPO_MODELS = ["base", "sft"] + PREFERENCE_RUNS
AGREEMENT_DATASETS = ["urdu_stories"] + sorted(config["agreement"]["datasets"])
SIMILARITY_METHODS = config["similarity"]["methods"]
SIMILARITY_TEST_SETS = config["similarity"]["test_sets"]
