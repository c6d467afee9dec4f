"""Shared machinery for tests, benchmarks and fault reports: real processes, simulator control."""
