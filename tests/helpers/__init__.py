"""Builders and paths the tests share (no test module imports another test module or conftest)."""
