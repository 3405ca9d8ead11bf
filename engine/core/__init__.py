"""Shared by every stage: device and precision, progress events, numbers for JSON output."""
