"""report: to be written."""
