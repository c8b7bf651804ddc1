"""Runnable examples of using m2mauth (importable so the test suite can exercise them)."""
