"""Built-in gamews plugins."""
