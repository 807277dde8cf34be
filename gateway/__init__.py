"""condense gateway."""
