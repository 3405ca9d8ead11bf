"""Model architectures (UNet, PSPNet-ResNet18) and the registry that rebuilds them by name."""

from __future__ import annotations

from reuse_console.engine.models.registry import (
    BUILTIN,
    build_model,
    checkpoint_path,
    default_config,
    load_model,
    model_in_channels,
    parse_arch_config,
    save_model,
)

__all__ = [
    "BUILTIN",
    "build_model",
    "checkpoint_path",
    "default_config",
    "load_model",
    "model_in_channels",
    "parse_arch_config",
    "save_model",
]
