"""Swaps of recipient tensors with a donor's, partial re-execution and scans of every layer and kind."""
