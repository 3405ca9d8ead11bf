"""The console's screens: Lab, Layers, Swap lab, Scan view, Jobs, and their modals."""

from __future__ import annotations
