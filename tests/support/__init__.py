"""Shared test support: builders and doubles used by tests and benchmarks."""
