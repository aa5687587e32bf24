"""similarity: to be written."""
