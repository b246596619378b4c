"""Tests for gamews.logs."""
