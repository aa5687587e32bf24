"""agreement: to be written."""
