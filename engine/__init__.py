"""The science: data, models, training, metrics, swaps, scans, comparisons, reuse. No UI here."""

from __future__ import annotations
