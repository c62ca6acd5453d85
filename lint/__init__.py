"""Checks `make lint` runs that the linters do not have built in (import-linter contract types)."""
