"""Paper 1 (Manzoor et al. 2024), empathic similarity: the datasets, masked-LM encoders, LLM
fine-tuning and zero-shot prompting, and their scores. Imports only the core."""
