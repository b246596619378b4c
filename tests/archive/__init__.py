"""Tests of the match archive (gamews.archive)."""
