"""Benchmarks: scripts that print a table and write JSON; never assertions in the test suite."""
