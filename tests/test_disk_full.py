"""A disk that fills while a real command writes into the lab: one clear line, exit 2, lab as before.

Where user namespaces allow it (`unshare -rm`), the lab is copied onto a small tmpfs that is then
filled up to a few KB, so writes fail with the real ENOSPC. Elsewhere the command runs with
RLIMIT_FSIZE (Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, "File too large").
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "reuse_console.tui.cli"]
FREE = 16 * 1024  # bytes left on the tmpfs (or the file-size limit)

# Inside the namespace: fill the tmpfs `mnt` with one file until `free` bytes are left.
FILL = textwrap.dedent(
    """
    def fill(mnt, free):
        import os
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, bytes(65536))
        except OSError:
            pass
        os.close(fd)
        os.truncate(mnt / "filler", max(0, os.path.getsize(mnt / "filler") - free))
    """
)

# Runs inside the namespace: copy the lab onto the tmpfs, fill it, run the command, report.
INSIDE = FILL + textwrap.dedent(
    """
    import hashlib, json, os, shutil, subprocess, sys
    from pathlib import Path
    mnt, lab, free, argv = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in sorted(root.rglob("*"))}
    copy = mnt / "lab"
    shutil.copytree(lab, copy)
    before = digest(copy)
    fill(mnt, free)
    argv = [a.replace("@LAB", str(copy)) for a in argv]
    proc = subprocess.run(argv, capture_output=True, text=True)
    print(json.dumps({"rc": proc.returncode, "err": proc.stderr, "before": before, "after": digest(copy)}))
    """
)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def _tmpfs_works(tmp: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    mnt = tmp / "probe"
    mnt.mkdir()
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt} && touch {mnt}/x"], capture_output=True
    )
    return probe.returncode == 0


def _run_full(lab: Path, argv: list[str], tmp: Path) -> dict:
    """Run `argv` (with @LAB for the lab) on a nearly full disk; before/after digests of the lab."""
    if _tmpfs_works(tmp):
        mnt = tmp / "mnt"
        mnt.mkdir()
        size = sum(p.stat().st_size for p in lab.rglob("*") if p.is_file()) + 4 * 1024 * 1024
        script = (
            f'mount -t tmpfs -o size={size} tmpfs {mnt} && exec {sys.executable} -c "$0" '
            f"{mnt} {lab} {FREE} '{json.dumps(argv)}'"
        )
        out = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script, INSIDE], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    copy = tmp / "lab"
    shutil.copytree(lab, copy)
    before = _digest(copy)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FREE, FREE))

    proc = subprocess.run(
        [a.replace("@LAB", str(copy)) for a in argv], capture_output=True, text=True, preexec_fn=limit, timeout=300
    )
    return {"rc": proc.returncode, "err": proc.stderr, "before": before, "after": _digest(copy)}


@pytest.fixture(scope="module")
def full_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from reuse_console.engine.data.importer import import_dataset
    from reuse_console.engine.data.phantom import make_phantom
    from reuse_console.engine.training.train import TrainSpec, train
    from reuse_console.store.lab import Lab

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("full")
    make_phantom(root / "phantom", subjects=3, scale=0.5, cine=False)
    lab = Lab(root / "lab")
    import_dataset(lab, root / "phantom", name="acdc", size=32, val_subjects=1)
    for task in ("seg", "ae"):
        train(
            lab,
            TrainSpec(data="acdc", arch_config={"base_width": 4}, task=task, epochs=1, batch=8, name=f"m-{task}"),
            device="cpu",
        )
    return lab.root


COMMANDS = {
    "import": ["data", "import", "@PHANTOM", "--name", "new", "--size", "32", "--val-subjects", "1"],
    "train": [
        "train",
        "--data",
        "acdc",
        "--arch-config",
        '{"base_width": 4}',
        "--epochs",
        "1",
        "--batch",
        "8",
        "--device",
        "cpu",
        "--name",
        "new",
    ],
    "scan": ["scan", "m-seg", "m-ae", "--data", "acdc", "--device", "cpu", "--name", "new"],
    "rmse": ["rmse", "m-seg", "m-ae", "--name", "new"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_full_disk_gives_one_line_and_leaves_the_lab_as_it_was(command: str, full_lab: Path, tmp_path: Path) -> None:
    phantom = full_lab.parent / "phantom"
    argv = [*CLI, *[a.replace("@PHANTOM", str(phantom)) for a in COMMANDS[command]], "--lab", "@LAB"]
    if command != "rmse":
        argv += ["--progress", "none"]
    out = _run_full(full_lab, argv, tmp_path)
    err = out["err"].strip()
    assert out["rc"] == 2, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1], err  # progress lines may come before
    err = errors[0]
    assert err.startswith("error: disk full"), err
    assert any(r in err for r in ("No space left on device", "File too large")), err
    assert out["after"] == out["before"], "the lab changed (or kept a temp/claim file)"


# A training run that fills the disk between epochs: its run file is appended in place and its
# checkpoints rewritten each epoch, so "the lab as before" means: every file still opens, the
# last checkpoint that landed is whole, and `train --resume` finishes the run once there is space.
MID_RUN = FILL + textwrap.dedent(
    """
    import json, os, subprocess, sys
    from pathlib import Path
    mnt, lab, free, argv, resume = (Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]),
                                    json.loads(sys.argv[4]), json.loads(sys.argv[5]))
    import shutil
    copy = mnt / "lab"
    shutil.copytree(lab, copy)
    fill(mnt, free)
    fix = lambda a: [x.replace("@LAB", str(copy)) for x in a]
    first = subprocess.run(fix(argv), capture_output=True, text=True)
    from reuse_console.store.lab import Lab
    from reuse_console.store.runs import read_run
    from reuse_console.store.checkpoints import read_meta
    entries = [(e.id, e.error) for e in Lab(copy).entries()]
    run = read_run(copy / "runs" / "mid.h5")
    last = read_meta(copy / "checkpoints" / "mid.last.h5").epoch
    temps = [p.name for p in copy.rglob(".tmp-*")]
    os.remove(mnt / "filler")
    second = subprocess.run(fix(resume), capture_output=True, text=True)
    done = read_run(copy / "runs" / "mid.h5")
    print(json.dumps({"rc": first.returncode, "err": first.stderr, "entries": entries, "status": run.status,
                      "epochs": len(run.epochs.get("epoch", [])), "last": last, "temps": temps,
                      "rc2": second.returncode, "err2": second.stderr, "status2": done.status,
                      "epochs2": len(done.epochs.get("epoch", []))}))
    """
)


@pytest.mark.slow
def test_a_disk_that_fills_between_epochs_leaves_a_resumable_run(full_lab: Path, tmp_path: Path) -> None:
    if not _tmpfs_works(tmp_path):
        pytest.skip("needs a size-limited tmpfs (unshare -rm): RLIMIT_FSIZE limits single files, not the disk")
    size = {p.name: p.stat().st_size for p in (full_lab / "checkpoints").iterdir()}
    best, last = size["m-seg.h5"], size["m-seg.last.h5"]
    free = 64 * 1024 + best + last + best + last // 2  # epoch 1 lands; epoch 2's .last temp file does not
    argv = [
        *CLI,
        "train",
        "--data",
        "acdc",
        "--arch-config",
        '{"base_width": 4}',
        "--epochs",
        "3",
        "--batch",
        "8",
        "--device",
        "cpu",
        "--name",
        "mid",
        "--lab",
        "@LAB",
        "--progress",
        "none",
    ]
    resume = [*CLI, "train", "--resume", "mid", "--device", "cpu", "--lab", "@LAB", "--progress", "none"]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    total = sum(p.stat().st_size for p in full_lab.rglob("*") if p.is_file()) + 16 * 1024 * 1024
    script = (
        f'mount -t tmpfs -o size={total} tmpfs {mnt} && exec {sys.executable} -c "$0" '
        f"{mnt} {full_lab} {free} '{json.dumps(argv)}' '{json.dumps(resume)}'"
    )
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script, MID_RUN], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    err = got["err"].strip()
    assert got["rc"] == 2, (got["rc"], err[-3000:])
    assert "Traceback" not in err and err.splitlines()[-1].startswith("error: disk full"), err
    assert all(error is None for _, error in got["entries"]), got["entries"]  # every lab file still opens
    assert got["temps"] == []
    assert got["last"] >= 1 and got["epochs"] >= got["last"], got  # the last checkpoint that landed is whole
    assert got["status"] in ("failed", "lost"), got["status"]
    assert got["rc2"] == 0, got["err2"]
    assert (got["status2"], got["epochs2"]) == ("finished", 3)
