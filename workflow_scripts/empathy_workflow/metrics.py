"""metrics: to be written."""
