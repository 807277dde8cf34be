"""condense notifier."""
