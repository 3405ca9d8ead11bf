"""Reuse plans (inferred, TOML) and transfer initialisation from a donor."""
