"""Checkpoint import/export: no code ever runs from a file, every mismatch is named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from reuse_console.engine.models.ckpt_io import (
    check_state_dict,
    export_checkpoint,
    import_checkpoint,
    read_state_file,
)
from reuse_console.engine.models.registry import build_model, default_config, load_model, save_model
from reuse_console.store.checkpoints import CheckpointMeta, read_checkpoint
from reuse_console.store.errors import UserError


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _unet_state(base_width: int = 4, out_channels: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model("unet", default_config("unet", 1, out_channels, base_width=base_width)).state_dict()


def test_malicious_pickle_is_refused_and_its_code_does_not_run(lab, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    state = _unet_state()
    state["enc1.conv1.weight"] = Payload(marker)  # type: ignore[assignment]
    torch.save(state, evil)
    with pytest.raises(UserError, match=r"refused evil.pt: it needs unpickling code \(\w+\.system\)"):
        import_checkpoint(lab, evil, arch="unet", task="seg", name="evil", arch_config={"base_width": 4})
    assert not marker.exists()
    assert not lab.exists("checkpoints", "evil")


def test_a_whole_pickled_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(build_model("unet", default_config("unet", 1, 4, base_width=4)), path)
    with pytest.raises(UserError, match="needs unpickling code"):
        read_state_file(path)


def test_non_tensor_entries_and_garbage_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pt"
    torch.save({"enc1.conv1.weight": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(UserError, match="entry 'epoch' is a int"):
        read_state_file(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read junk.pt"):
        read_state_file(junk)
    with pytest.raises(UserError, match="not found"):
        read_state_file(tmp_path / "absent.pt")


def test_wrapped_state_dict_is_unwrapped(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"a": torch.ones(2)}, "epoch": 7}, path)
    assert list(read_state_file(path)) == ["a"]


def test_shape_mismatch_names_the_first_mismatching_key(lab, tmp_path: Path) -> None:
    state = _unet_state(base_width=4)
    state["enc2.conv2.weight"] = torch.zeros(8, 8, 5, 5)
    state["dec3.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        import_checkpoint(lab, path, arch="unet", task="seg", name="bad", arch_config={"base_width": 4})
    message = str(err.value)
    assert "enc2.conv2.weight has shape (8, 8, 5, 5), unet needs (8, 8, 3, 3)" in message
    assert "(and 1 more mismatches)" in message
    assert not lab.exists("checkpoints", "bad")


def test_wrong_width_is_a_shape_mismatch(lab, tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(_unet_state(base_width=8), path)
    with pytest.raises(UserError, match="enc1.conv1.weight has shape \\(8, 1, 3, 3\\), unet needs \\(4, 1, 3, 3\\)"):
        import_checkpoint(lab, path, arch="unet", task="seg", name="w", arch_config={"base_width": 4})


def test_missing_and_unexpected_keys_are_named() -> None:
    expected = _unet_state()
    got = dict(expected)
    del got["dec1.bn2.running_var"]
    with pytest.raises(UserError, match="missing key 'dec1.bn2.running_var' \\(shape \\(32,\\)\\)"):
        check_state_dict(expected, got, "f.pt", "unet")
    got = dict(expected, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(UserError, match="unexpected key 'extra.weight'"):
        check_state_dict(expected, got, "f.pt", "unet")
    # BN step counters are optional: exports from other tools often drop them
    got = {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    check_state_dict(expected, got, "f.pt", "unet")


def test_import_infers_channels_and_loads_the_exact_tensors(lab, tmp_path: Path) -> None:
    state = _unet_state(base_width=4, out_channels=3, seed=1)
    path = tmp_path / "three.safetensors"
    save_file(state, str(path))
    target, meta = import_checkpoint(
        lab, path, arch="unet", task="ae", name="three", arch_config={"base_width": 4}, data="t1"
    )
    assert target == lab.path("checkpoints", "three")
    assert meta.arch_config["in_channels"] == 1 and meta.arch_config["out_channels"] == 3
    assert meta.classes == ["class0", "class1", "class2"] and meta.task == "ae" and meta.data == "t1"
    model, _ = load_model(lab, "three")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(UserError, match="already exists"):
        import_checkpoint(lab, path, arch="unet", task="ae", name="three", arch_config={"base_width": 4})
    with pytest.raises(UserError, match="names 2 classes"):
        import_checkpoint(
            lab, path, arch="unet", task="seg", name="x", arch_config={"base_width": 4}, classes=["a", "b"]
        )
    with pytest.raises(UserError, match="unknown task"):
        import_checkpoint(lab, path, arch="unet", task="cls", name="y", arch_config={"base_width": 4})


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_export_then_import_is_bit_identical(lab, tmp_path: Path, fmt: str) -> None:
    config = default_config("pspnet", 1, 4, width=0.125)
    model = build_model("pspnet", config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    save_model(lab, "src", model, CheckpointMeta(arch="pspnet", arch_config=config, task="seg"))
    out = export_checkpoint(lab, "src", tmp_path / f"src.{fmt}")
    exported = load_file(str(out)) if fmt == "safetensors" else torch.load(out, weights_only=True)
    original, _ = read_checkpoint(lab.path("checkpoints", "src"))
    assert exported.keys() == original.keys()
    import_checkpoint(lab, out, arch="pspnet", task="seg", name="back", arch_config={"width": 0.125})
    again, meta = read_checkpoint(lab.path("checkpoints", "back"))
    assert meta.classes == ["background", "RV", "MYO", "LV"]
    assert again.keys() == original.keys()
    for key, tensor in original.items():
        assert again[key].dtype == tensor.dtype
        assert torch.equal(
            again[key].view(torch.uint8) if tensor.is_floating_point() else again[key],
            tensor.view(torch.uint8) if tensor.is_floating_point() else tensor,
        ), key
    with pytest.raises(UserError, match="already exists"):
        export_checkpoint(lab, "src", out)
    export_checkpoint(lab, "src", out, overwrite=True)


def test_export_format_errors(lab, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot tell the format"):
        export_checkpoint(lab, "src", tmp_path / "out.bin2")
    with pytest.raises(UserError, match="unknown format"):
        export_checkpoint(lab, "src", tmp_path / "out.pt", "onnx")
