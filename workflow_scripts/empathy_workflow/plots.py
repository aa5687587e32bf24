"""plots: to be written."""
