"""The core every part uses: I/O, config, job runtime, downloads, Hugging Face loading and trainer
set-up, statistics and agreement measures, plots, the LLM endpoint client, code fingerprints.
It imports nothing else of the package (tests/test_layers.py)."""
