"""condense summarizer."""
