"""Paper 1 (Manzoor et al. 2024), annotator agreement: English vs Urdu, the aggregate scores, and
the tables and figures of the study. Imports only the core."""
