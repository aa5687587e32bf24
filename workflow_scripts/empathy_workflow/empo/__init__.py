"""Paper 2 (EmPO): emotion-grounded preference pairs, SFT and preference training with LoRA,
generation, and evaluation (diff-Epitome, BERTScore, diversity, valence, lm-eval, human and LLM
judges). Imports only the core."""
