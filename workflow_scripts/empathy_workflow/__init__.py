"""The library behind the workflow's rules, in two layers: `core` (I/O, Hugging Face loading and
training set-up, statistics, agreement measures, plots, downloads, config) used by every part,
and one subpackage per paper (`agreement`, `similarity`, `empo`) that imports only the core;
`report` sits above them all (tests/test_layers.py keeps the rule).

Rule scripts in workflow_scripts/ are thin: each reads `snakemake.input/params/output`, calls
into this package and writes its outputs.
"""

import os

# Idle OpenMP threads sleep instead of spinning: on shared cores spinning made torch 10-17x slower
# (benchmarks/generation.md). It must be set before torch loads OpenMP; every job, test and the
# Snakefile import this package first, so this is the one place it is set.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
