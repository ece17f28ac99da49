"""Helpers shared by test modules (fixtures live in tests/fixtures/, helpers here)."""
