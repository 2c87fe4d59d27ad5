"""Fixture app for the mypy plugin's YAML suite."""
