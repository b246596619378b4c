"""Benchmarks (see README.md); nothing here runs in CI."""
