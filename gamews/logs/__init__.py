"""Game-server log sources and parsers."""
