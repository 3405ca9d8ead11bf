"""Widgets of the console: they render what the engine computed, and post messages up."""

from __future__ import annotations
