"""The condense command line and the embedded stack that wires every component together."""
