"""CLI commands, one module per area; each stays thin and calls the library."""
