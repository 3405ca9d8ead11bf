"""Label names to classes: raw label values declared by a source, mapped to the cardiac classes.

Names are matched by alias, so an nnU-Net set labelled {"background": 0, "myocardium": 1} lands
on MYO = 2 and a set whose names are not cardiac keeps its own classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from reuse_console.engine.data.slices import CARDIAC_CLASSES
from reuse_console.store.errors import UserError

ALIASES: dict[str, tuple[str, ...]] = {
    "background": ("background", "bg", "bkg", "none", "clear label"),
    "RV": (
        "rv",
        "rv cavity",
        "rvc",
        "right ventricle",
        "right ventricular cavity",
        "right ventricle cavity",
        "rv blood pool",
        "rvbp",
        "rv endocardium",
    ),
    "MYO": (
        "myo",
        "myocardium",
        "lv myocardium",
        "lvm",
        "mlv",
        "left ventricle myocardium",
        "lv myo",
        "left ventricular myocardium",
        "myocard",
        "lv wall",
        "myocardial wall",
    ),
    "LV": (
        "lv",
        "lv cavity",
        "lvc",
        "left ventricle",
        "left ventricular cavity",
        "left ventricle cavity",
        "lv blood pool",
        "lv bloodpool",
        "lvbp",
        "lv endocardium",
    ),
}
_ALIAS_TO_CLASS = {alias: cls for cls, names in ALIASES.items() for alias in names}


def canonical_class(name: str) -> str | None:
    """The canonical cardiac class a label name means, or None ('RV cavity' -> 'RV')."""
    key = re.sub(r"[\s_\-]+", " ", name.strip().lower())
    return _ALIAS_TO_CLASS.get(key)


@dataclass
class ClassMap:
    """Where raw label values go: `lut[raw]` is the stored class index."""

    classes: list[str]
    present: list[bool]
    lut: np.ndarray  # uint8 (256,)
    declared: dict[int, str]

    def describe(self) -> str:
        return ", ".join(f"{v} {n}" for v, n in sorted(self.declared.items()))


def map_classes(declared: dict[int, str]) -> ClassMap:
    """Map declared {raw value: name} to classes.

    If every name is a cardiac class (by alias), the classes are the canonical four with
    `present` flags for those declared; otherwise the declared names are kept as they are,
    which then must be the values 0..K-1.
    """
    if not declared:
        raise UserError("no label classes declared")
    bad = [v for v in declared if not 0 <= v <= 255]
    if bad:
        raise UserError(f"label values must be 0..255, got {bad}")
    lut = np.zeros(256, dtype=np.uint8)
    mapped = {v: canonical_class(n) for v, n in declared.items()}
    if all(c is not None for c in mapped.values()):
        seen: dict[str, int] = {}
        for v, c in sorted(mapped.items()):
            if c in seen:
                raise UserError(f"label values {seen[c]} and {v} both name class {c}")
            seen[c] = v  # type: ignore[index]
            lut[v] = CARDIAC_CLASSES.index(c)  # type: ignore[arg-type]
        present = [c in seen or c == "background" for c in CARDIAC_CLASSES]
        return ClassMap(list(CARDIAC_CLASSES), present, lut, dict(declared))
    values = sorted(declared)
    if values != list(range(len(values))):
        raise UserError(f"non-cardiac classes must use the values 0..{len(values) - 1}, got {values}")
    lut[: len(values)] = np.arange(len(values), dtype=np.uint8)
    return ClassMap([declared[v] for v in values], [True] * len(values), lut, dict(declared))
