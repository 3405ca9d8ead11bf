"""Grid cells on one worker process per device (e.g. `--devices cuda:0,cuda:1`).

Workers are spawned (never forked: CUDA), take the next cell when they finish one, send their
progress events back to the grid process, and die with it (so a resumed grid never meets an
orphan still training one of its cells). Each worker sets torch's CPU threads to what the grid
process set (`grid --threads`), before any torch work.
"""

from __future__ import annotations

import contextlib
import os
import queue
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.core.device import applied_threads, use_threads
from reuse_console.engine.core.events import EpochEnd, Event, Message, Reporter, from_dict
from reuse_console.engine.grids.cells import cell_spec, evaluate_cell, run_id, train_spec
from reuse_console.engine.grids.naming import EXPERIMENT
from reuse_console.engine.grids.study import Cell, Study
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab


def run_parallel(
    lab: Lab,
    study: Study,
    name: str,
    cells: list[Cell],
    to_train: list[int],
    devices: Sequence[str],
    precision: str,
    workers: int | None,
    classes: list[str],
    record: Callable[[int, np.ndarray], None],
    report: Reporter,
    naming: str = EXPERIMENT,
) -> None:
    """Train `to_train` cells on one spawned worker process per device, each taking the next cell
    when it finishes one; `record` gets every cell's Dice as it arrives, `report` the events.
    The workers use the CPU threads this process was given (`use_threads`; default as there)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results: Any = ctx.Queue()
    inboxes = [ctx.Queue() for _ in devices]
    n_workers = min(len(devices), len(to_train))
    threads = applied_threads()
    procs = [
        ctx.Process(
            target=_worker_main,
            name=f"grid-{name}-{w}",
            args=(
                str(lab.root),
                study.to_dict(),
                name,
                devices[w],
                precision,
                workers,
                classes,
                inboxes[w],
                results,
                w,
                os.getpid(),
                threads,
                naming,
            ),
        )
        for w in range(n_workers)
    ]
    pending = list(to_train)
    busy: dict[int, int] = {}
    errors: list[str] = []

    def feed(w: int) -> None:
        if pending and not errors:
            k = pending.pop(0)
            busy[w] = k
            report(Message(f"cell {cells[k].name} on {devices[w]}"))
            inboxes[w].put(k)
        else:
            busy.pop(w, None)
            inboxes[w].put(None)

    try:
        for p in procs:
            p.start()
        for w in range(n_workers):
            feed(w)
        while busy:
            try:
                msg = results.get(timeout=1.0)
            except queue.Empty:
                for w, k in list(busy.items()):
                    if not procs[w].is_alive():
                        errors.append(
                            f"cell {cells[k].name}: worker on {devices[w]} died (exit code {procs[w].exitcode})"
                        )
                        busy.pop(w)
                continue
            what, w = msg[0], msg[1]
            if what == "event":
                report(from_dict(msg[2]))
            elif what == "done":
                record(msg[2], np.asarray(msg[3], dtype=np.float64).reshape(-1, len(classes)))
                feed(w)
            elif what == "error":
                errors.append(f"cell {cells[msg[2]].name} on {devices[w]}: {msg[3]}")
                feed(w)
    finally:
        for w in range(n_workers):
            with contextlib.suppress(Exception):
                inboxes[w].put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
    if errors:
        raise UserError(f"{errors[0]} ({len(errors)} cell(s) failed; finished cells are kept: rerun with --resume)")


def _die_with_parent(parent: int) -> None:
    """Linux: have the kernel kill this worker when the grid process dies (SIGKILL included), so
    a resumed grid never meets an orphan still training (and claiming) one of its cells."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the grid died before the line above
        os._exit(1)


def _worker_main(
    root: str,
    study_dict: dict[str, Any],
    name: str,
    device: str,
    precision: str,
    workers: int | None,
    classes: list[str],
    inbox: Any,
    results: Any,
    w: int,
    parent: int,
    threads: int | None,
    naming: str = EXPERIMENT,
) -> None:
    """A grid worker: train and evaluate the cells it is handed on its device, until told to stop."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    _die_with_parent(parent)
    use_threads(threads, device)
    lab, study = Lab(Path(root)), Study.from_dict(study_dict)
    cells = study.cells()

    def forward(event: Event) -> None:
        if isinstance(event, (EpochEnd, Message)):
            results.put(("event", w, event.to_dict()))

    while True:
        try:
            k = inbox.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the grid process is gone: stop
                return
            continue
        if k is None:
            return
        try:
            spec = cell_spec(study, cells[k], run_id(study, name, cells[k], naming))
            how = train_spec(lab, spec, device=device, precision=precision, workers=workers, report=forward)
            dice = evaluate_cell(lab, study, name, cells[k], classes, device=device, precision=precision, naming=naming)
            results.put(("done", w, k, dice.tolist(), how))
        except KeyboardInterrupt:
            return
        except Exception as exc:  # reported to the grid, which stops handing out cells
            results.put(("error", w, k, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
