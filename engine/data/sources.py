"""Which reader a collection needs: its layout detected from what is in the folder, or named by
--format, dispatched to the reader of that layout (formats.py for the NIfTI layouts, rvsc.py and
dicom_series.py for DICOM; pydicom is imported only when a DICOM file is read)."""

from __future__ import annotations

from pathlib import Path

from reuse_console.engine.data.dicom_series import read_dicom
from reuse_console.engine.data.formats import FORMATS, PATIENT_DIR, Source, read_acdc, read_folders, read_nnunet
from reuse_console.engine.data.rvsc import read_rvsc
from reuse_console.store.errors import UserError


def detect_format(root: Path) -> str:
    """Guess the layout of `root` from what is in it."""
    if (root / "dataset.json").exists():
        return "nnunet"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "folders"
    for c in [root, root / "TrainingSet", root / "Test1Set", root / "Test2Set"]:
        patients = [p for p in c.iterdir() if p.is_dir() and PATIENT_DIR.match(p.name)] if c.is_dir() else []
        if any(d.is_dir() and d.name.lower().endswith("dicom") for p in patients for d in p.iterdir()):
            return "rvsc"
    for c in (root, root / "training"):
        if c.is_dir() and any(p.is_dir() and PATIENT_DIR.match(p.name) for p in c.iterdir()):
            return "acdc"
    raise UserError(f"{root}: cannot tell its layout; give --format {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")


def read_source(root: Path, fmt: str = "auto", classes: list[str] | None = None) -> Source:
    """Find the volumes of a collection in one of FORMATS (or detect it)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such folder")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    if not any(root.iterdir()):
        raise UserError(f"{root}: empty folder")
    if fmt == "auto":
        fmt = detect_format(root)
    if classes is not None and fmt not in ("folders", "dicom"):
        raise UserError("--classes applies to --format folders and dicom only (the others declare their labels)")
    if fmt == "acdc":
        return read_acdc(root)
    if fmt == "nnunet":
        return read_nnunet(root)
    if fmt == "folders":
        return read_folders(root, classes)
    if fmt == "rvsc":
        return read_rvsc(root)
    if fmt == "dicom":
        return read_dicom(root, classes)
    raise UserError(f"unknown format {fmt!r}: choose {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
