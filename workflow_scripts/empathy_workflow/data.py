"""data: to be written."""
