"""condense workers."""
