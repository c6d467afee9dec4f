"""The worker pools, declared once, and the launcher that renders their command lines."""
