"""Cardiac MRI data: the synthetic phantom, readers of real layouts, and lab data sets of 2D slices."""

from __future__ import annotations

from reuse_console.engine.data.slices import CARDIAC_CLASSES, SliceSet, load_slices

__all__ = ["CARDIAC_CLASSES", "SliceSet", "load_slices"]
