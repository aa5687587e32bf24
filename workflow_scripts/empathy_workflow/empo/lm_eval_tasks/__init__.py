"""Retained general ability of the EmPO models with lm-evaluation-harness (used as a library).

`runner` builds the lm-eval task files and the `simple_evaluate` calls: the local `mmlu_local`
task over the shipped MMLU CSVs (default config, offline) or lm-eval's stock tasks by name
(`mmlu`, `leaderboard`: full-scale configs)."""
