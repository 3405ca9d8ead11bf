"""`predict` in the lab: the predictor table of a stored scan, written to comparisons/<name>.h5."""

from __future__ import annotations

from typing import Any

from reuse_console.engine.core.events import Finished, Reporter, silent
from reuse_console.engine.reuse.predict import Predictor, predict_scan
from reuse_console.engine.reuse.predict_store import write_predictor
from reuse_console.engine.swaps.scan_store import load_scan


def run_predict(
    lab: Any,
    scan_ref: str,
    *,
    name: str | None = None,
    report: Reporter = silent,
    **options: Any,
) -> Predictor:
    """`predict_scan` of stored scan `scan_ref`, stored as comparisons/<name>.h5 (default predict-SCAN,
    predict-SCAN-recal with `recalibrated`)."""
    scan = load_scan(lab, scan_ref)
    if name is None:
        base = "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in f"predict-{scan.name}")[:84]
        base += "-recal" if options.get("recalibrated") else ""
        name = lab.unique_name("comparisons", base)
    with lab.claim("comparisons", name, new=True) as path:
        result = predict_scan(lab, scan, report=report, **options)
        result.name = path.stem
        write_predictor(path, result, {"scan": scan.name, **{k: v for k, v in options.items() if k != "device"}})
    report(Finished("predict", result.name, result.seconds))
    return result
