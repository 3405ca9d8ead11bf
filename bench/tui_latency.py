"""Key-to-redraw latency of the console, idle and while a training job runs. Goal: median < 100 ms.

The console runs headless in this process at 80x24 (Textual still lays out and renders every
frame; only the write to a terminal is skipped, so this measures the app, not the terminal).
A key is posted, and the latency is the time until the first frame that shows its effect is
composed (`App._display` is called with it). Keys alternate between switching screens
(1 Lab <-> 5 Jobs) and moving the cursor in the Lab's checkpoint table.

Reference in the same run: a bare Textual app whose only key toggles one line of text, the
floor for any Textual app on this machine. Then the same console while a real training job
(`reuse-console train`, a base-width-8 UNet) runs beside it, competing for the CPU, with the
Jobs screen following it (0.5 s polls).

    .venv/bin/python bench/tui_latency.py [--keys 60] [--lab DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Static

from reuse_console.store.lab import Lab
from reuse_console.tui.app import ConsoleApp, ConsoleConfig


class FrameClock:
    """Wraps `app._display` to time the first frame at which `done()` holds."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.done: Callable[[], bool] | None = None
        self.t0 = 0.0
        self.latency: float | None = None
        real = app._display

        def display(screen: Any, renderable: Any) -> None:
            real(screen, renderable)
            if renderable is not None and self.done is not None and self.latency is None and self.done():
                self.latency = time.perf_counter() - self.t0

        app._display = display  # type: ignore[method-assign]

    async def measure(self, pilot: Any, key: str, done: Callable[[], bool], timeout: float = 5.0) -> float:
        self.done, self.latency = done, None
        self.t0 = time.perf_counter()
        await pilot.press(key)
        deadline = time.perf_counter() + timeout
        while self.latency is None and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
        self.done = None
        if self.latency is None:
            raise RuntimeError(f"no frame showed the effect of {key!r} within {timeout} s")
        return self.latency


class Bare(App[None]):
    """The reference: one key, one line of text."""

    BINDINGS = [("t", "toggle", "Toggle")]

    def compose(self) -> ComposeResult:
        yield Static("off", id="line")

    def action_toggle(self) -> None:
        line = self.query_one("#line", Static)
        line.update("on" if str(line.content) == "off" else "off")


async def bare_latencies(keys: int) -> list[float]:
    app = Bare()
    async with app.run_test(size=(80, 24)) as pilot:
        clock = FrameClock(app)
        out = []
        for _ in range(keys):
            want = "on" if str(app.query_one("#line", Static).content) == "off" else "off"
            out.append(await clock.measure(pilot, "t", lambda w=want: str(app.query_one("#line", Static).content) == w))
            await asyncio.sleep(random.uniform(0.02, 0.08))
        return out


async def console_latencies(lab: Lab, keys: int, on_jobs: bool) -> list[float]:
    """Alternate screen switches and table moves; with `on_jobs` the Jobs screen is visited every time."""
    config = ConsoleConfig(lab=lab, lab_label="bench", job_poll_s=0.5, lab_poll_s=5.0)
    app = ConsoleApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        clock = FrameClock(app)
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.screen.show_kind("checkpoints")
        await pilot.pause()
        table = app.screen.query_one("#table-checkpoints")
        out = []
        for i in range(keys):
            if i % 3 == 0:
                out.append(await clock.measure(pilot, "5", lambda: type(app.screen).__name__ == "JobsScreen"))
                await asyncio.sleep(random.uniform(0.3, 0.6) if on_jobs else 0.05)  # let polls redraw meanwhile
                out.append(await clock.measure(pilot, "1", lambda: type(app.screen).__name__ == "LabScreen"))
            else:
                before = table.cursor_row
                key = "down" if before < table.row_count - 1 else "up"
                want = before + (1 if key == "down" else -1)
                out.append(await clock.measure(pilot, key, lambda w=want: table.cursor_row == w))
            await asyncio.sleep(random.uniform(0.02, 0.08))
        return out


def build_lab(root: Path) -> Lab:
    """A tiny lab: a 3-subject phantom and one base-width-4 UNet (seconds)."""
    from reuse_console.engine.data.importer import import_dataset
    from reuse_console.engine.data.phantom import make_phantom
    from reuse_console.engine.training.train import TrainSpec, train

    make_phantom(root / "phantom", subjects=3, scale=0.5, cine=False)
    lab = Lab(root / "lab")
    import_dataset(lab, root / "phantom", name="acdc", size=64, val_subjects=1)
    for task in ("seg", "ae"):
        train(
            lab,
            TrainSpec(data="acdc", arch_config={"base_width": 4}, task=task, epochs=1, batch=8, name=f"unet-{task}"),
            device="cpu",
        )
    return lab


def line(name: str, values: list[float], ref: float | None = None) -> str:
    ms = sorted(v * 1000 for v in values)
    med = statistics.median(ms)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    ratio = f"  {med / ref:5.1f}x the reference" if ref else ""
    return f"{name:<34} n={len(ms):3d}  median {med:6.1f} ms  p90 {p90:6.1f} ms  max {ms[-1]:6.1f} ms{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=60, help="key presses per condition")
    parser.add_argument("--lab", type=Path, default=None, help="use this lab (needs a data set 'acdc')")
    args = parser.parse_args()
    random.seed(0)
    lab = Lab(args.lab) if args.lab else build_lab(Path(tempfile.mkdtemp(prefix="tui-latency-")))

    ref = asyncio.run(bare_latencies(args.keys))
    idle = asyncio.run(console_latencies(lab, args.keys, on_jobs=False))
    ref_ms = statistics.median(ref) * 1000

    from reuse_console.engine.jobs.cancel import cancel_job
    from reuse_console.engine.jobs.control import list_jobs, read_events, start_job

    argv = [
        "train",
        "--data",
        "acdc",
        "--arch-config",
        '{"base_width": 8}',
        "--epochs",
        "200",
        "--batch",
        "8",
        "--device",
        "cpu",
    ]
    job = start_job(lab, argv)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not read_events(job)[0]:
            time.sleep(0.2)
        busy = asyncio.run(console_latencies(lab, args.keys, on_jobs=True))
        status = next(j.status for j in list_jobs(lab) if j.id == job.id)
    finally:
        cancel_job(lab, job.id)

    print(line("bare Textual app (reference)", ref))
    print(line("console, idle", idle, ref_ms))
    print(line(f"console, training job {status}", busy, ref_ms))
    med_idle, med_busy = statistics.median(idle) * 1000, statistics.median(busy) * 1000
    verdict = "met" if max(med_idle, med_busy) < 100 else "NOT met"
    print(
        f"tui latency: median idle {med_idle:.0f} ms, with a running job {med_busy:.0f} ms (goal < 100 ms: {verdict})"
    )


if __name__ == "__main__":
    main()
