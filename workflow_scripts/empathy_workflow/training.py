"""training: to be written."""
