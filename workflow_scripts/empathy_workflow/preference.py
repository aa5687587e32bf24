"""preference: to be written."""
