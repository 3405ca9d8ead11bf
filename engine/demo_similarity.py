"""The demo's similarity steps (issue 15): shared vs different initialisation, alignment, CKA, predictors.

The paper's swaps are between models that share their initial weights (the seg model and the
auto-encoder of one seed). Here the same seg model also gets the auto-encoder of another seed as
donor, raw and aligned (Git Re-Basin), and the predictor table asks, for each of these scans,
whether raw RMSE, aligned RMSE or CKA ranks the tensors by their measured Dice drop. Every step is
skipped when its result is already in the lab. Called by engine/demo.py after the analysis step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reuse_console.engine.compare.align import run_align
from reuse_console.engine.compare.align_states import aligned_donor
from reuse_console.engine.compare.cka_lab import run_cka
from reuse_console.engine.core.events import Message, Reporter, silent
from reuse_console.engine.reuse.plans import scan_dice_drops
from reuse_console.engine.reuse.predict_lab import run_predict
from reuse_console.engine.reuse.predict_store import read_predictor
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.swaps.scan_store import load_scan, progress_path
from reuse_console.store.lab import Lab

SHARED_SCAN = "scan-seg-vs-ae-acdc"  # the demo's main scan: donor of the same seed (shared init)
RECIPIENT = "unet-seg-acdc"
OTHER_DONOR = "unet-ae-acdc-s1"  # trained from seed 1: another initialisation
OTHER_SCAN = "scan-seg-vs-ae-s1-acdc"
ALIGNED_SCAN = "scan-seg-vs-ae-s1-aligned-acdc"
ALIGNED_DONOR = "unet-ae-acdc-s1-aligned"
CKA = "cka-acdc"
CKA_MODELS = ("unet-seg-acdc", "unet-ae-acdc", "unet-seg-acdc-s1", "unet-ae-acdc-s1")
SHOWN = ("rmse", "aligned-rmse", "cka")


@dataclass
class SimilarityFindings:
    """Per scan: its mean foreground drop and, per shown measure, (rho, AUC) over all tensors."""

    scans: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # everything these steps made or found

    def lines(self) -> list[str]:
        """The summary lines the demo prints."""
        out = []
        for scan, found in self.scans.items():
            cells = ", ".join(f"{m} rho {found[m][0]:+.2f} AUC {found[m][1]:.2f}" for m in SHOWN if m in found)
            out.append(f"{scan} ({found['condition']}): mean drop {found['mean_drop']:.3f}; {cells}")
        return out


def _scan(lab: Lab, name: str, donor: str, *, align: bool, device: str, report: Reporter) -> None:
    if lab.path("scans", name).exists():
        return
    report(Message(f"scan {RECIPIENT} <- {donor}{' aligned' if align else ''}: every layer and kind"))
    run_scan(
        lab,
        RECIPIENT,
        donor,
        "acdc",
        device=device,
        name=name,
        resume=progress_path(lab, name).exists(),
        align=aligned_donor if align else None,
        report=report,
    )


def similarity_steps(lab: Lab, *, device: str = "auto", report: Reporter = silent) -> SimilarityFindings:
    """Align, CKA, the different-seed scans and the predictor tables; returns the findings."""
    findings = SimilarityFindings()
    if not lab.path("checkpoints", ALIGNED_DONOR).exists():
        report(Message(f"align {OTHER_DONOR} to {RECIPIENT}"))
        run_align(lab, OTHER_DONOR, RECIPIENT, data="acdc", name=ALIGNED_DONOR, device=device, report=report)
    if not lab.path("comparisons", CKA).exists():
        report(Message(f"CKA of {', '.join(CKA_MODELS)}"))
        run_cka(lab, list(CKA_MODELS), "acdc", device=device, name=CKA, report=report)
    _scan(lab, OTHER_SCAN, OTHER_DONOR, align=False, device=device, report=report)
    _scan(lab, ALIGNED_SCAN, OTHER_DONOR, align=True, device=device, report=report)
    findings.ids += [ALIGNED_DONOR, CKA, OTHER_SCAN, ALIGNED_SCAN]
    conditions = {SHARED_SCAN: "shared init", OTHER_SCAN: "other seed, raw", ALIGNED_SCAN: "other seed, aligned"}
    for scan, condition in conditions.items():
        name = f"predict-{scan}"
        if not lab.path("comparisons", name).exists():
            report(Message(f"predictor table of {scan}"))
            run_predict(lab, scan, name=name, device=device, report=report)
        table = read_predictor(lab.path("comparisons", name), name)
        found: dict[str, Any] = {"condition": condition, "predictor": name}
        found["mean_drop"] = float(np.mean(list(scan_dice_drops(load_scan(lab, scan)).values())))
        for measure in SHOWN:
            row = table.row(measure)
            if row is not None:
                found[measure] = (row.rho, row.auc)
        findings.scans[scan] = found
        findings.ids.append(name)
    return findings
