"""F_BRAIN test suite."""
