#!/usr/bin/env bash
# Run by Snakemake inside the new environment right after creating it (--software-deployment-method
# conda): the workflow's own library, editable from the repository that runs the workflow (rules/
# common.smk exports EMPATHY_WORKFLOW_REPO), so jobs import the code as it is in the tree. Tested by
# tests/test_envs.py::test_post_deploy_installs_the_workflow_library (a fresh venv, this script).
set -euo pipefail
python -m pip install --no-deps -e "${EMPATHY_WORKFLOW_REPO:?run by Snakemake with this workflow (rules/common.smk sets it)}"
