"""The lab: a directory of HDF5 files, one per object, written atomically."""

from __future__ import annotations
