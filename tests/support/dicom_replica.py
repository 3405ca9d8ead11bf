"""Hand-made DICOM files and a tiny RVSC replica, written with pydicom alone (not with the
phantom's writer), so the readers are checked against files made another way.

The replica (`make_rvsc`): patient01 with two slice positions and three time points. File names
follow RVSC's numbering (image = slice x 3 + time point + 1), but the geometry puts the second
file slice *below* the first, and trigger times are what orders time; ED (t0) has square
i-contours, ES (t2) circles, and the first ED image an o-contour too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
ROWS, COLS = 10, 12
PIXEL_SPACING = (1.5, 1.25)  # row spacing (y), column spacing (x)
SLOPE, INTERCEPT = 2.0, -10.0
# slice index k of the file names -> z of ImagePositionPatient: file slice 1 lies 8 mm below slice 0
Z_OF_FILE_SLICE = (0.0, -8.0)
SQUARE = [(1.5, 1.5), (4.5, 1.5), (4.5, 4.5), (1.5, 4.5)]  # fills rows 2-4, columns 2-4
CIRCLE_CENTRE, CIRCLE_RADIUS = (6.0, 5.0), 2.2  # x, y: fills the 13 centres within 2.2 (by hand: 1 + 3 + 5 + 3 + 1)


def write_image(
    path: Path,
    pixels: np.ndarray,
    *,
    position: tuple[float, float, float] = (0.0, 0.0, 0.0),
    orientation: tuple[float, ...] = ORIENTATION,
    spacing: tuple[float, float] = PIXEL_SPACING,
    trigger: float = 0.0,
    instance: int = 1,
    slope: float = SLOPE,
    intercept: float = INTERCEPT,
    series: str = "1.2.826.0.1.3680043.8.498.1",
    pixel_data: bool = True,
    compressed: bool = False,
) -> Path:
    """One MR image file; `compressed` declares JPEG 2000 with bytes no decoder can read."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEG2000Lossless if compressed else pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.SeriesInstanceUID = "MR", "anon", series
    ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = list(position)
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 8.0
    ds.TriggerTime = trigger
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if compressed:
        ds.PixelData = encapsulate([b"\x00\x01not a jpeg 2000 stream" * 4])
    elif pixel_data:
        ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def stored_pixels(k: int, t: int) -> np.ndarray:
    """The stored values of file slice k, time point t: distinct per file, so mix-ups show."""
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    return (100 * (k + 1) + 10 * t + rows * COLS + cols).astype(np.uint16)


def circle() -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    cx, cy = CIRCLE_CENTRE
    return np.stack([cx + CIRCLE_RADIUS * np.cos(angles), cy + CIRCLE_RADIUS * np.sin(angles)], axis=1)


def write_points(path: Path, points: np.ndarray | list[tuple[float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x:.4f} {y:.4f}\n" for x, y in points))


def make_rvsc(root: Path, *, contours: bool = True, set_name: str = "TrainingSet") -> Path:
    """`root/<set_name>/patient01/`: 2 slices x 3 time points; see the module's docstring."""
    patient = root / set_name / "patient01"
    for k in range(2):
        for t in range(3):
            stem = f"P01-{k * 3 + t + 1:04d}"
            write_image(
                patient / "P01dicom" / f"{stem}.dcm",
                stored_pixels(k, t),
                position=(-20.0, -30.0, Z_OF_FILE_SLICE[k]),
                trigger=[0.0, 250.0, 400.0][t],
                instance=t + 1,
            )
            if not contours:
                continue
            folder = patient / "P01contours-manual"
            if t == 0:
                write_points(folder / f"{stem}-icontour-manual.txt", SQUARE)
                if k == 0:
                    write_points(folder / f"{stem}-ocontour-manual.txt", [(0.5, 0.5), (6.5, 0.5), (6.5, 6.5)])
            if t == 2:
                write_points(folder / f"{stem}-icontour-manual.txt", circle())
    return root / set_name


def square_mask() -> np.ndarray:
    mask = np.zeros((ROWS, COLS), dtype=np.uint8)
    mask[2:5, 2:5] = 1
    return mask


def circle_mask() -> np.ndarray:
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    return (((cols - CIRCLE_CENTRE[0]) ** 2 + (rows - CIRCLE_CENTRE[1]) ** 2) <= CIRCLE_RADIUS**2).astype(np.uint8)
