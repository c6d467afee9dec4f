"""Operator surfaces: the ops page, health and readiness, metrics, dead letters."""
