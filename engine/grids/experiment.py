"""Experiments: the stored result of a transfer grid, the paper's Table 3 and its RMSE (figs 13/14).

Per cell the Dice per validation subject and class; per table row (source, mode, subjects) the
mean and standard deviation over seeds of the cells' mean Dice (mean over subjects), per class
and for the foreground mean, and the difference of the row mean to random initialisation with
the same subject count, paired by seed, with its 95% t interval (engine/grids/intervals.py). The
standard deviation is the sample one (ddof 1); with one seed it is undefined (NaN, shown as "-").

Layout of experiments/<name>.h5 (kind "experiment"): see store/SCHEMA.md and `write_experiment`.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.core.numbers import finite_or_none
from reuse_console.engine.grids.intervals import excludes_zero, paired_interval
from reuse_console.store.errors import UserError
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, open_h5, read_strings, set_json, stamp, write_strings
from reuse_console.store.lab import Lab

KIND = "experiment"
FG = "fg"


@dataclass
class CellRecord:
    """One cell as stored: what it trained and its Dice per subject and class (NaN: not done)."""

    name: str
    source: str
    mode: str
    subjects: int | None
    seed: int
    checkpoint: str
    dice: np.ndarray  # (S, C)

    @property
    def done(self) -> bool:
        return bool(self.dice.size) and not bool(np.isnan(self.dice).all())


@dataclass
class TableRow:
    source: str
    mode: str
    subjects: int | None
    seeds: int  # finished seeds
    mean: np.ndarray  # (C + 1,) classes then fg
    std: np.ndarray
    diff: np.ndarray  # row mean - random init mean (NaN for the random rows or without one)
    low: np.ndarray | None = None  # 95% t interval of the seed-paired difference (NaN: under 2 pairs)
    high: np.ndarray | None = None

    @property
    def significant(self) -> np.ndarray:
        """Per column: the difference's interval excludes 0."""
        if self.low is None or self.high is None:
            return np.zeros(self.mean.shape, dtype=bool)
        return excludes_zero(self.low, self.high)


@dataclass
class Experiment:
    """A grid's results: cells, the table, and optionally RMSE of every cell against a reference."""

    name: str
    target: str
    classes: list[str]
    present: list[bool]
    subjects: list[str]
    cells: list[CellRecord]
    study: dict[str, Any] = field(default_factory=dict)
    status: str = "complete"
    random_source: str | None = None
    reference: str | None = None
    rmse_layers: list[str] = field(default_factory=list)
    rmse_index: list[int | None] = field(default_factory=list)
    rmse_kinds: list[str] = field(default_factory=list)
    rmse: np.ndarray | None = None  # (N, L, K)
    naming: str = "experiment"  # how its cells' runs are named: experiment | content (engine/grids/naming.py)

    @property
    def columns(self) -> list[str]:
        """Table columns: the present classes, then the foreground mean."""
        return [c for c, p in zip(self.classes, self.present) if p] + [FG]

    def cell_means(self) -> np.ndarray:
        """(N, C + 1): each cell's mean Dice over subjects per class (NaN if absent) and fg mean."""
        out = np.full((len(self.cells), len(self.classes) + 1), np.nan)
        fg = [c for c, p in enumerate(self.present) if p and c > 0]
        for i, cell in enumerate(self.cells):
            if not cell.done:
                continue
            with warnings.catch_warnings():  # NaN cells (a study's empty = "ignore") are left out, as by eval
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.where(self.present, np.nanmean(cell.dice, axis=0), np.nan)
                out[i, :-1] = mean
                out[i, -1] = np.nanmean(mean[fg]) if fg else np.nan
        return out

    def table(self) -> list[TableRow]:
        """One row per (source, mode, subjects), in cell order."""
        means = self.cell_means()
        rows: dict[tuple[str, str, int | None], list[int]] = {}
        for i, cell in enumerate(self.cells):
            rows.setdefault((cell.source, cell.mode, cell.subjects), []).append(i)
        out: list[TableRow] = []
        done_in: dict[tuple[str, str, int | None], list[int]] = {}
        for (source, mode, n), idx in rows.items():
            done = done_in[(source, mode, n)] = [i for i in idx if self.cells[i].done]
            values = means[done]
            mean = values.mean(axis=0) if done else np.full(means.shape[1], np.nan)
            std = values.std(axis=0, ddof=1) if len(done) > 1 else np.full(means.shape[1], np.nan)
            out.append(TableRow(source, mode, n, len(done), mean, std, np.full(means.shape[1], np.nan)))
        random_by_seed = {
            (self.cells[i].subjects, self.cells[i].seed): i
            for (source, _, _), done in done_in.items()
            if source == self.random_source
            for i in done
        }
        for r in out:
            if r.source == self.random_source:
                continue
            pairs = [
                (i, random_by_seed[(r.subjects, self.cells[i].seed)])
                for i in done_in[(r.source, r.mode, r.subjects)]
                if (r.subjects, self.cells[i].seed) in random_by_seed
            ]
            if pairs:
                r.diff, r.low, r.high = paired_interval(np.stack([means[i] - means[j] for i, j in pairs]))
        return out

    # -- formats ----------------------------------------------------------------------------------

    def _col_index(self) -> list[int]:
        return [c for c, p in enumerate(self.present) if p] + [len(self.classes)]

    def table_json(self) -> list[dict[str, Any]]:
        cols, idx = self.columns, self._col_index()
        return [
            {
                "source": r.source,
                "mode": r.mode,
                "subjects": r.subjects if r.subjects is not None else "all",
                "seeds": r.seeds,
                "mean": {c: finite_or_none(r.mean[i]) for c, i in zip(cols, idx)},
                "std": {c: finite_or_none(r.std[i]) for c, i in zip(cols, idx)},
                "diff": {c: finite_or_none(r.diff[i]) for c, i in zip(cols, idx)},
                "diff_ci95": {c: _interval(r, i) for c, i in zip(cols, idx)},
                "significant": {c: bool(r.significant[i]) for c, i in zip(cols, idx)},
            }
            for r in self.table()
        ]

    def table_cells(self, digits: int = 3, sep: str = " ") -> tuple[list[str], list[list[str]]]:
        """Header and rows of text: "0.812 ± 0.013 (+0.021)" per column, diff to random in brackets
        (after `sep`: a newline puts it on a second line)."""
        header = ["source", "mode", "subjects", "seeds", *self.columns[:-1], "mean fg"]
        rows = []
        for r in self.table():
            cells = [r.source, r.mode, "all" if r.subjects is None else str(r.subjects), str(r.seeds)]
            for i in self._col_index():
                text = _fmt(r.mean[i], digits)
                if math.isfinite(r.std[i]):
                    text += f" ± {r.std[i]:.{digits}f}"
                if math.isfinite(r.diff[i]):
                    text += f"{sep}({r.diff[i]:+.{digits}f}{'*' if r.significant[i] else ''})"
                cells.append(text)
            rows.append(cells)
        return header, rows

    def table_markdown(self, digits: int = 3) -> str:
        header, rows = self.table_cells(digits)
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" if i < 2 else "--:" for i in range(len(header))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        note = (
            (
                f"\nDice on the {len(self.subjects)} validation subject(s) of {self.target}: mean ± sample std over "
                f"seeds; in brackets the difference to random initialisation ({self.random_source}) with the "
                "same number of training subjects, paired by seed; * its 95% t interval over seeds excludes 0.\n"
            )
            if self.random_source
            else "\n"
        )
        return "\n".join(lines) + "\n" + note

    def table_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        cols, idx = self.columns, self._col_index()
        writer.writerow(
            [
                "source",
                "mode",
                "subjects",
                "seeds",
                *[f"{c}_{stat}" for c in cols for stat in ("mean", "std", "diff", "diff_low95", "diff_high95")],
            ]
        )
        for r in self.table():
            values = []
            for i in idx:
                low = r.low[i] if r.low is not None else math.nan
                high = r.high[i] if r.high is not None else math.nan
                values += [_csv(r.mean[i]), _csv(r.std[i]), _csv(r.diff[i]), _csv(low), _csv(high)]
            writer.writerow([r.source, r.mode, "all" if r.subjects is None else r.subjects, r.seeds, *values])
        return buf.getvalue()

    def summary(self) -> dict[str, Any]:
        done = sum(c.done for c in self.cells)
        out: dict[str, Any] = {
            "kind": KIND,
            "target": self.target,
            "status": self.status,
            "cells": f"{done}/{len(self.cells)}",
        }
        rows = [r for r in self.table() if r.seeds]
        if rows:
            best = max(rows, key=lambda r: -1 if math.isnan(r.mean[-1]) else r.mean[-1])
            n = "all" if best.subjects is None else best.subjects
            out["best"] = f"{best.source} {best.mode} n={n}: {_fmt(best.mean[-1], 3)}"
        return out

    def to_json(self) -> dict[str, Any]:
        means = self.cell_means()
        cols, idx = self.columns, self._col_index()
        return {
            "name": self.name,
            "target": self.target,
            "status": self.status,
            "reference": self.reference,
            "random_source": self.random_source,
            "naming": self.naming,
            "classes": self.classes,
            "present": self.present,
            "subjects": self.subjects,
            "study": self.study,
            "cells": [
                {
                    "name": c.name,
                    "source": c.source,
                    "mode": c.mode,
                    "subjects": c.subjects if c.subjects is not None else "all",
                    "seed": c.seed,
                    "checkpoint": c.checkpoint,
                    "done": c.done,
                    "dice": {col: finite_or_none(means[k, i]) for col, i in zip(cols, idx)},
                }
                for k, c in enumerate(self.cells)
            ],
            "table": self.table_json(),
        }


def _interval(row: TableRow, i: int) -> list[float] | None:
    if row.low is None or row.high is None or not (math.isfinite(row.low[i]) and math.isfinite(row.high[i])):
        return None
    return [float(row.low[i]), float(row.high[i])]


def _fmt(value: float, digits: int) -> str:
    return "-" if not math.isfinite(float(value)) else f"{value:.{digits}f}"


def _csv(value: float) -> str:
    return "" if not math.isfinite(float(value)) else repr(float(value))


# -- storage ---------------------------------------------------------------------------------------


def write_experiment(path: Path, exp: Experiment) -> Path:
    """Write experiments/<name>.h5 atomically (the grid rewrites it after every cell)."""
    with atomic_h5(path) as f:
        stamp(f, KIND, {"experiment": exp.name, "study": exp.study})
        for key in ("name", "target", "status"):
            f.attrs[key] = getattr(exp, key)
        f.attrs["random_source"] = exp.random_source or ""
        f.attrs["reference"] = exp.reference or ""
        f.attrs["naming"] = exp.naming
        set_json(f, "study", exp.study)
        set_json(f, "classes", exp.classes)
        set_json(f, "present", [bool(p) for p in exp.present])
        set_json(f, "columns", exp.columns)
        set_json(f, "summary", exp.summary())
        write_strings(f, "subjects", exp.subjects)
        g = f.create_group("cells")
        c = exp.cells
        for key in ("name", "source", "mode", "checkpoint"):
            write_strings(g, key, [getattr(x, key) for x in c])
        g.create_dataset("subjects", data=np.array([-1 if x.subjects is None else x.subjects for x in c], dtype="<i8"))
        g.create_dataset("seed", data=np.array([x.seed for x in c], dtype="<i8"))
        g.create_dataset("done", data=np.array([x.done for x in c], dtype=bool))
        dice = np.stack([x.dice for x in c]) if c else np.zeros((0, len(exp.subjects), len(exp.classes)))
        g.create_dataset("dice", data=dice.astype(np.float64))
        g.create_dataset("mean", data=exp.cell_means())
        t = f.create_group("table")
        rows = exp.table()
        write_strings(t, "source", [r.source for r in rows])
        write_strings(t, "mode", [r.mode for r in rows])
        t.create_dataset(
            "subjects", data=np.array([-1 if r.subjects is None else r.subjects for r in rows], dtype="<i8")
        )
        t.create_dataset("seeds", data=np.array([r.seeds for r in rows], dtype="<i8"))
        width = len(exp.classes) + 1
        for key in ("mean", "std", "diff"):
            t.create_dataset(key, data=np.array([getattr(r, key) for r in rows]).reshape(len(rows), width))
        nan = np.full(width, np.nan)
        for key in ("low", "high"):  # the seed-paired difference's 95% t interval (engine/grids/intervals.py)
            values = [nan if getattr(r, key) is None else getattr(r, key) for r in rows]
            t.create_dataset(f"diff_{key}95", data=np.array(values).reshape(len(rows), width))
        if exp.rmse is not None:
            r = f.create_group("rmse")
            write_strings(r, "layers", exp.rmse_layers)
            r.create_dataset("index", data=np.array([-1 if i is None else i for i in exp.rmse_index], dtype="<i8"))
            write_strings(r, "kinds", exp.rmse_kinds)
            r.create_dataset("values", data=np.asarray(exp.rmse, dtype=np.float64))
    return path


def read_experiment(path: Path, name: str | None = None) -> Experiment:
    with open_h5(path) as f:
        if attr_str(f, "kind") != KIND:
            raise UserError(f"{path} is not an experiment (kind {attr_str(f, 'kind') or 'missing'!r})")
        g = f["cells"]
        names = read_strings(g["name"])
        sources, modes, ckpts = read_strings(g["source"]), read_strings(g["mode"]), read_strings(g["checkpoint"])
        subjects, seeds, dice = g["subjects"][()], g["seed"][()], g["dice"][()]
        cells = [
            CellRecord(
                names[i],
                sources[i],
                modes[i],
                None if subjects[i] < 0 else int(subjects[i]),
                int(seeds[i]),
                ckpts[i],
                dice[i],
            )
            for i in range(len(names))
        ]
        exp = Experiment(
            name=name or attr_str(f, "name") or path.stem,
            target=attr_str(f, "target"),
            classes=get_json(f, "classes", []),
            present=get_json(f, "present", []),
            subjects=read_strings(f["subjects"]),
            cells=cells,
            study=get_json(f, "study", {}) or {},
            status=attr_str(f, "status"),
            random_source=attr_str(f, "random_source") or None,
            reference=attr_str(f, "reference") or None,
            naming=attr_str(f, "naming") or "experiment",  # written before cluster grids: experiment names
        )
        if "rmse" in f:
            r = f["rmse"]
            exp.rmse_layers = read_strings(r["layers"])
            exp.rmse_index = [None if int(i) < 0 else int(i) for i in r["index"][()]]
            exp.rmse_kinds = read_strings(r["kinds"])
            exp.rmse = r["values"][()]
        return exp


def load_experiment(lab: Lab, ref: str) -> Experiment:
    entry = lab.resolve(ref.removeprefix("experiments/"), "experiments")
    return read_experiment(entry.path, entry.id)
