"""Deterministic, seeded synthetic raw data in the real upstream formats (the embedded default)."""
