"""gamews test suite."""
