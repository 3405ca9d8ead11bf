"""A scan job's live view gives variants/s and an ETA from its events (by hand: 4 of 10 in 8 s)."""

from __future__ import annotations

import datetime as dt
import io
from types import SimpleNamespace

from rich.console import Console

from reuse_console.engine.core.events import Started, VariantDone
from reuse_console.tui.widgets import job_view


def test_a_running_scan_shows_variants_per_second_and_eta(monkeypatch) -> None:
    events = [Started("scan s", 10, unit="variants")]
    events += [VariantDone(i, 10, str(i), "RM", 1.0, {"LV": 0.9}) for i in range(1, 5)]
    monkeypatch.setattr("reuse_console.engine.jobs.control.read_events", lambda job, since: (events, len(events)))
    monkeypatch.setattr("reuse_console.engine.jobs.control.read_log_tail", lambda job, lines: [])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    job = SimpleNamespace(id="j", status="running", started=start.isoformat(), ended=None, argv=["scan"], command="")
    snap = job_view.JobFollower("j").poll(job, now=start + dt.timedelta(seconds=8))
    assert snap.rate == 0.5 and snap.eta == 12.0
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(job_view.render_snapshot(snap, 80, 24))
    text = console.export_text()
    assert "0.50 variants/s" in text and "ETA 0:12" in text
