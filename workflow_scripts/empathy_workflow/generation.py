"""generation: to be written."""
