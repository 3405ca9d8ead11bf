"""Write phantom subjects in the RVSC layout: one DICOM image per slice and time point, contours as text.

    OUT/TrainingSet/patientNN/PNNdicom/PNN-NNNN.dcm
    OUT/TrainingSet/patientNN/PNNcontours-manual/PNN-NNNN-icontour-manual.txt (ED and ES images only)

Images are numbered slice by slice, every time point of the cine in turn (image = slice x frames +
time point + 1), as the challenge numbers them. The stack is oblique (`ORIENTATION`), as short-axis
views are, so the reader's geometry (slice order along the normal, the affine) is exercised. The
i-contour of an image is the outline of its RV label (engine/data/contours.mask_contour); filling it
back gives the label exactly for the phantom's one-piece RV regions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reuse_console.engine.data.contours import mask_contour, write_contour

if TYPE_CHECKING:
    from reuse_console.engine.data.phantom import PhantomSubject

RV = 1
# row direction, then column direction (orthonormal): an oblique short-axis plane
ORIENTATION = (0.8, 0.6, 0.0, -0.36, 0.48, 0.8)
FRAME_MS = 30.0  # TriggerTime step between cine frames


def rvsc_names(index: int) -> tuple[str, str]:
    """('patient01', 'P01') for the first subject: RVSC numbers patients with two digits."""
    return f"patient{index:02d}", f"P{index:02d}"


def _dataset(
    pixels: np.ndarray, *, subject: str, spacing: tuple[float, float, float], slice_index: int, frame: int
) -> Any:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientID = subject
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[subject, "cine"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[subject])
    sx, sy, sz = spacing
    row_dir = np.asarray(ORIENTATION[:3])
    col_dir = np.asarray(ORIENTATION[3:])
    normal = np.cross(row_dir, col_dir)
    rows, cols = pixels.shape
    centre = -(cols - 1) / 2 * sx * row_dir - (rows - 1) / 2 * sy * col_dir
    position = centre + slice_index * sz * normal
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in ORIENTATION]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.SliceLocation = f"{float(np.dot(normal, position)):.6f}"
    ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]  # row spacing (along y), column spacing (along x)
    ds.SliceThickness = f"{sz:.6f}"
    ds.TriggerTime = f"{frame * FRAME_MS:.1f}"
    ds.InstanceNumber = frame + 1
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    return ds


def write_rvsc_subject(out: Path, subject: PhantomSubject, index: int) -> Path:
    """`out/TrainingSet/patientNN/`: every cine frame of every slice as DICOM, ED and ES i-contours."""
    folder_name, code = rvsc_names(index)
    folder = out / "TrainingSet" / folder_name
    dicom_dir = folder / f"{code}dicom"
    contour_dir = folder / f"{code}contours-manual"
    dicom_dir.mkdir(parents=True, exist_ok=True)
    contour_dir.mkdir(parents=True, exist_ok=True)
    cine = subject.cine()  # (x, y, slice, frame)
    frames = cine.shape[3]
    labelled = {f.number - 1: f.label for f in subject.frames}
    for k in range(cine.shape[2]):
        for t in range(frames):
            stem = f"{code}-{k * frames + t + 1:04d}"
            pixels = np.clip(cine[:, :, k, t], 0, None).T  # (rows = y, columns = x)
            ds = _dataset(pixels, subject=folder_name, spacing=subject.spacing, slice_index=k, frame=t)
            ds.save_as(str(dicom_dir / f"{stem}.dcm"), enforce_file_format=True)
            if t in labelled:
                outline = mask_contour(labelled[t][:, :, k].T == RV)
                if outline is not None:
                    write_contour(contour_dir / f"{stem}-icontour-manual.txt", outline)
    return folder
