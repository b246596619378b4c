"""Tests for gamews.rcon."""
