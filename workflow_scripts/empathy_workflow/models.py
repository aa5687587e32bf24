"""models: to be written."""
