"""Model architectures (UNet, PSPNet-ResNet18) and the registry that rebuilds them by name."""

from __future__ import annotations
