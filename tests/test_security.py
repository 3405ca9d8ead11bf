"""No code from files, no names that escape the lab, the umask respected, no network listener."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from reuse_console.engine.models.registry import build_model, default_config, load_model
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "reuse_console.tui.cli"]


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _one_line_refusal(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_ckpt_import_of_a_malicious_pickle_refuses_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.manual_seed(0)
    state = build_model("unet", default_config("unet", 1, 4, base_width=4)).state_dict()
    state["enc1.conv1.weight"] = Payload(marker)  # type: ignore[assignment]
    torch.save(state, evil)
    err = _one_line_refusal(
        _cli(
            "ckpt",
            "import",
            str(evil),
            "--arch",
            "unet",
            "--task",
            "seg",
            "--arch-config",
            '{"base_width": 4}',
            "--name",
            "evil",
            "--lab",
            str(tmp_path / "lab"),
        )
    )
    assert "refused evil.pt" in err
    assert not marker.exists()
    assert not (tmp_path / "lab" / "checkpoints").exists() or not any((tmp_path / "lab" / "checkpoints").iterdir())


def test_a_user_architecture_named_in_a_lab_file_is_not_imported(tmp_path: Path, monkeypatch) -> None:
    """A checkpoint someone hands over names `evilmod:Net`; loading it must not import evilmod."""
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lab = Lab(tmp_path / "lab")
    from reuse_console.engine.models.registry import save_model
    from reuse_console.store.checkpoints import CheckpointMeta

    model = build_model("unet", default_config("unet", 1, 4, base_width=4))
    save_model(lab, "handed", model, CheckpointMeta(arch="unet", arch_config={}, task="seg"))
    with h5py.File(lab.path("checkpoints", "handed"), "r+") as f:  # the tampered file
        for key in [k for k in f.attrs if "arch" in k]:
            value = f.attrs[key]
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text == "unet":
                f.attrs[key] = "evilmod:Net"
    with pytest.raises(UserError, match="REUSE_TRUST_ARCH=evilmod:Net"):
        load_model(lab, "handed")
    assert not marker.exists() and "evilmod" not in sys.modules


@pytest.mark.parametrize(
    ("arch", "config"),
    [
        ("os:system", {"command": "touch {marker}"}),
        ("subprocess:run", {"args": ["touch", "{marker}"]}),
        ("subprocess:Popen", {"args": ["touch", "{marker}"]}),
    ],
)
def test_a_lab_file_cannot_make_a_loaded_function_run(tmp_path: Path, arch: str, config: dict) -> None:
    """A checkpoint naming a function of a module that is already loaded (`os:system` with the
    file's config as keyword arguments) would run a command: only model classes are built from a
    lab file unless the user lists the arch."""
    marker = tmp_path / "ran"
    lab = Lab(tmp_path / "lab")
    from reuse_console.engine.models.registry import save_model
    from reuse_console.store.checkpoints import CheckpointMeta

    model = build_model("unet", default_config("unet", 1, 4, base_width=4))
    save_model(lab, "handed", model, CheckpointMeta(arch="unet", arch_config={}, task="seg"))
    filled = json.loads(json.dumps(config).replace("{marker}", str(marker)))
    with h5py.File(lab.path("checkpoints", "handed"), "r+") as f:  # the tampered file
        f.attrs["arch"] = arch
        f.attrs["arch_config"] = json.dumps(filled)
    with pytest.raises(UserError) as refused:
        load_model(lab, "handed")
    assert arch in str(refused.value)
    assert not marker.exists()


def test_a_model_library_class_named_in_a_lab_file_reopens_without_listing(tmp_path: Path) -> None:
    """A checkpoint of a MONAI model reopens in a fresh process with no $REUSE_TRUST_ARCH: importing
    a model library runs only its own code, and only its nn.Module classes are built."""
    from reuse_console.engine.models.registry import save_model
    from reuse_console.store.checkpoints import CheckpointMeta

    lab = Lab(tmp_path / "lab")
    arch, config = "monai.networks.nets:BasicUNet", {"spatial_dims": 2, "features": [4, 4, 8, 8, 16, 4]}
    model = build_model(arch, config)
    save_model(lab, "monai", model, CheckpointMeta(arch=arch, arch_config=config, task="seg"))
    code = (
        "import sys; from reuse_console.store.lab import Lab; "
        "from reuse_console.engine.models.registry import load_model; "
        "m, _ = load_model(Lab(sys.argv[1]), 'monai'); print(type(m).__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "REUSE_TRUST_ARCH"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(lab.root)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "BasicUNet"


def test_data_only_loaders_everywhere() -> None:
    """Every torch.load is weights_only, every np.load refuses pickles; no pickle/eval/exec/yaml."""
    problems = []
    for path in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("store/**/*.py"), *ROOT.glob("tui/**/*.py")]:
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                problems.append(f"{path}: {m.group(0)}")
        for m in re.finditer(r"np\.load\(([^)]*)\)", text):
            if "allow_pickle=False" not in m.group(1):
                problems.append(f"{path}: {m.group(0)}")
        for pattern in (r"pickle\.loads?\(", r"(?<![.\w])eval\(", r"(?<![.\w])exec\(", r"\byaml\.", r"marshal\.loads"):
            if re.search(pattern, text):
                problems.append(f"{path}: {pattern}")
    assert problems == []


def test_no_network_servers_in_the_code() -> None:
    """Nothing binds or listens: jobs and the console talk through the lab's files only."""
    pattern = re.compile(r"\.bind\(|\.listen\(|socketserver|http\.server|create_server|start_server|asyncio\.start_")
    hits = [
        f"{p}: {m.group(0)}"
        for p in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("store/**/*.py"), *ROOT.glob("tui/**/*.py")]
        for m in pattern.finditer(p.read_text())
    ]
    assert hits == []


BAD_NAMES = ["../x", "/tmp/x", "a/b", "a b", "a\nb", "..", ".", "ünï", "-x", "x" * 300, "x.h5", ""]


def _study(folder: Path) -> Path:
    """A valid one-cell study on the small lab (only its --name is bad)."""
    path = folder / "study.toml"
    path.write_text(
        'name = "s"\ntarget = "toy"\nsubjects = [2]\nseeds = 1\nmodes = ["finetune"]\n'
        '[train]\narch_config = { base_width = 4 }\nepochs = 1\n[[sources]]\nname = "random"\n'
    )
    return path


def _plan_toml(lab_root: Path, folder: Path) -> Path:
    """A plan TOML exported from the small lab's plan `p` (valid; only --name will be bad)."""
    out = folder / "p.toml"
    if not out.exists():
        proc = _cli("plan", "export", "p", "--out", str(out), "--lab", str(lab_root))
        assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from toydata import write_toy

    from reuse_console.engine.training.train import TrainSpec, train

    root = tmp_path_factory.mktemp("sec") / "lab"
    lab = Lab(root)
    write_toy(lab, "toy", n_subjects=3, per_subject=2, size=32)
    for name in ("a", "b"):
        train(
            lab,
            TrainSpec(data="toy", arch_config={"base_width": 4}, epochs=1, batch=4, name=name, seed=len(name)),
            device="cpu",
        )
    from reuse_console.engine.compare.rmse import run_rmse
    from reuse_console.engine.reuse.plan_lab import plan_from_lab

    run_rmse(lab, ["a", "b"], name="cmp")
    plan_from_lab(lab, rmse="cmp", max_rmse=1.0, name="p")
    return root


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


@pytest.mark.slow
def test_names_that_would_escape_the_lab_are_refused_everywhere(small_lab: Path, tmp_path: Path) -> None:
    """Each command that takes --name, with each bad name: one line, exit 2, nothing written anywhere."""
    pt = tmp_path / "w.pt"
    torch.save(build_model("unet", default_config("unet", 1, 4, base_width=4)).state_dict(), pt)
    lab = ["--lab", str(small_lab)]
    commands = {
        "train": ["train", "--data", "toy", "--epochs", "1", "--device", "cpu", *lab],
        "scan": ["scan", "a", "b", "--data", "toy", "--device", "cpu", *lab],
        "swap": ["swap", "a", "b", "--data", "toy", "--layers", "1", "--kinds", "RM", "--device", "cpu", *lab],
        "rmse": ["rmse", "a", "b", *lab],
        "ckpt import": [
            "ckpt",
            "import",
            str(pt),
            "--arch",
            "unet",
            "--task",
            "seg",
            "--arch-config",
            '{"base_width": 4}',
            *lab,
        ],
        "data import": ["data", "import", str(tmp_path), *lab],
        "plan": ["plan", "--rmse", "cmp", "--max-rmse", "1", *lab],
        "plan import": ["plan", "import", str(_plan_toml(small_lab, tmp_path)), *lab],
        "grid": ["grid", str(_study(tmp_path)), "--device", "cpu", *lab],
        "jobs start": ["jobs", "start", *lab],
    }
    before = _snapshot(small_lab)
    outside = set(os.listdir("/tmp"))
    bad_names = ["../x", "/tmp/x", "a b", "ünï", "x" * 300, "a/b", ".."]
    for k, (what, argv) in enumerate(commands.items()):
        for bad in (bad_names[k % len(bad_names)], bad_names[(k + 3) % len(bad_names)]):  # every name, every command
            tail = ["--", "ls"] if what == "jobs start" else []
            proc = _cli(*argv, "--name", bad, *tail, cwd=tmp_path)
            err = _one_line_refusal(proc)
            assert "name" in err, (what, bad, err)
    assert _snapshot(small_lab) == before
    assert not (small_lab.parent / "x.h5").exists() and not Path("/tmp/x.h5").exists()
    assert not {n for n in set(os.listdir("/tmp")) - outside if n.startswith("x")}


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_check_name_refuses_every_escaping_or_odd_name(bad: str, tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    with pytest.raises(UserError):
        lab.ensure_new("plans", bad)
    with pytest.raises(UserError):
        lab.resolve(bad)
    assert not (tmp_path / "lab").exists()


def test_nul_in_a_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        Lab(tmp_path).ensure_new("plans", "a\x00b")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_lab_files_follow_the_umask(umask: int, mode: int, small_lab: Path, tmp_path: Path) -> None:
    """Every kind of file a command writes (temp-then-rename HDF5, claims, exports, job side files)."""
    import shutil

    lab_root = tmp_path / "lab"
    shutil.copytree(small_lab, lab_root)
    shutil.rmtree(lab_root / "comparisons")  # made by the fixture: the command below must make it
    old = os.umask(umask)
    try:
        procs = [
            _cli("rmse", "a", "b", "--name", "r", "--lab", str(lab_root)),
            _cli("ckpt", "export", "a", "--out", str(tmp_path / "out" / "a.pt"), "--lab", str(lab_root)),
            _cli("jobs", "start", "--name", "j", "--lab", str(lab_root), "--", "ls"),
        ]
    finally:
        os.umask(old)
    for proc in procs[:2]:
        assert proc.returncode == 0, proc.stderr
    made = [lab_root / "comparisons" / "r.h5", tmp_path / "out" / "a.pt"]
    if procs[2].returncode == 0:
        made += [p for p in (lab_root / "jobs").iterdir() if p.is_file()]
    for path in made:
        assert path.stat().st_mode & 0o777 == mode, f"{path}: {oct(path.stat().st_mode & 0o777)}"
    for folder in (lab_root / "comparisons", tmp_path / "out"):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask, folder


def test_ids_read_from_a_tampered_lab_file_are_checked_like_typed_ones(small_lab: Path, tmp_path: Path) -> None:
    """A checkpoint whose stored data set id is '../../x', a comparison whose stored models are
    '../x': the commands that follow those ids refuse in one line and write nothing."""
    import shutil

    from reuse_console.store.h5 import set_json

    root = tmp_path / "lab"
    shutil.copytree(small_lab, root)
    with h5py.File(root / "checkpoints" / "a.h5", "r+") as f:
        f.attrs["data"] = "../../x"
    with h5py.File(root / "comparisons" / "cmp.h5", "r+") as f:
        set_json(f, "models", ["../x", "/tmp/x"])
    before = _snapshot(root)
    err = _one_line_refusal(_cli("eval", "a", "--device", "cpu", "--lab", str(root)))
    assert "'../../x'" in err
    err = _one_line_refusal(_cli("plan", "--rmse", "cmp", "--max-rmse", "1", "--name", "q", "--lab", str(root)))
    assert "'../x'" in err
    assert _snapshot(root) == before
    assert not (tmp_path / "x.h5").exists() and not (root.parent.parent / "x.h5").exists()


def _listening(pids: set[int]) -> list[str]:
    import psutil

    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid in pids and conn.status == psutil.CONN_LISTEN:
            found.append(f"pid {conn.pid} listens on {conn.laddr}")
    return found


def _tree(pid: int) -> set[int]:
    import psutil

    try:
        proc = psutil.Process(pid)
        return {pid, *(c.pid for c in proc.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


@pytest.mark.slow
def test_nothing_listens_while_the_console_runs_a_job_and_a_grid_runs_workers(small_lab: Path, tmp_path: Path) -> None:
    """Checked on the live processes: the console (headless) with a training job under way, and a
    grid with two worker processes (`--devices cpu,cpu`): no socket of theirs is listening."""
    import asyncio
    import shutil
    import time

    import psutil

    from reuse_console.engine.jobs.control import get_job, start_job
    from reuse_console.tui.app import ConsoleApp, ConsoleConfig

    root = tmp_path / "lab"
    shutil.copytree(small_lab, root)
    lab = Lab(root)
    study = tmp_path / "grid.toml"
    study.write_text(
        'name = "g"\ntarget = "toy"\nsubjects = [2]\nseeds = 2\nmodes = ["finetune"]\n'
        '[train]\narch_config = { base_width = 4 }\nepochs = 2\n[[sources]]\nname = "random"\n'
    )
    grid = subprocess.Popen(
        [*CLI, "grid", str(study), "--devices", "cpu,cpu", "--lab", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    job = start_job(
        lab,
        [
            "train",
            "--data",
            "toy",
            "--epochs",
            "3",
            "--device",
            "cpu",
            "--arch-config",
            '{"base_width": 4}',
            "--name",
            "bg",
        ],
    )
    seen: list[str] = []
    checks = 0

    async def drive() -> None:
        nonlocal checks
        app = ConsoleApp(ConsoleConfig(lab=lab, system_stats=False))
        async with app.run_test(size=(80, 24)) as pilot:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and grid.poll() is None:
                await pilot.press("5")
                await pilot.pause(0.3)
                pids = {os.getpid(), *_tree(grid.pid), *_tree(job.pid)}
                seen.extend(_listening(pids))
                checks += 1 if len(_tree(grid.pid)) > 1 else 0

    try:
        asyncio.run(drive())
    finally:
        grid.kill()
        grid.wait(timeout=30)
        from reuse_console.engine.jobs.cancel import cancel_job

        cancel_job(lab, job.id)
    assert checks > 0, "the grid's worker processes were never seen"
    assert seen == []
    assert get_job(lab, job.id) is not None and psutil.pid_exists(os.getpid())
