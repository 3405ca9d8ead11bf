"""CKA: the paper's formulas written plainly (n x n Gram matrices, centering matrix H) against the
streamed feature-space statistics, the invariances CKA is known for, and models against themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reuse_console.engine.compare.cka import GramStats, debiased_cka, linear_cka
from reuse_console.engine.compare.cka_lab import layer_groups, load_models, measure, run_cka
from reuse_console.engine.compare.cka_store import is_cka, read_similarity
from reuse_console.engine.compare.features import FeatureSpec
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import eval_batches
from reuse_console.store.errors import UserError

# -- the formulas as the papers write them ---------------------------------------------------------


def hsic_biased(k: np.ndarray, m: np.ndarray) -> float:
    """Gretton's HSIC: tr(K H L H) / (n-1)^2, H = I - 11^T / n (Kornblith et al. 2019, eq. 3)."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ m @ h)) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, m: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC, with the Gram matrices' diagonals set to zero."""
    n = k.shape[0]
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(m, 0.0)
    one = np.ones(n)
    return float(
        (np.trace(k @ m) + (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (one @ k @ m @ one))
        / (n * (n - 3))
    )


def cka_plain(x: np.ndarray, y: np.ndarray, hsic) -> float:
    k, m = x @ x.T, y @ y.T  # K and L of the papers
    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


def _random(n: int, p: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + rng.normal(size=p) * 3  # a mean far from zero
    y = x[:, : min(p, q)] @ rng.normal(size=(min(p, q), q)) + rng.normal(size=(n, q))
    return x, y


@pytest.mark.parametrize(("n", "p", "q", "seed"), [(30, 5, 7, 0), (12, 40, 3, 1), (200, 16, 16, 2), (6, 2, 9, 3)])
def test_equals_the_papers_formulas(n: int, p: int, q: int, seed: int) -> None:
    x, y = _random(n, p, q, seed)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert linear_cka(tx, ty) == pytest.approx(cka_plain(x, y, hsic_biased), abs=1e-6)
    assert debiased_cka(tx, ty) == pytest.approx(cka_plain(x, y, hsic_unbiased), abs=1e-6)


def test_streamed_equals_all_in_memory() -> None:
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(90, w)) + i for i, w in enumerate((6, 6, 11))]
    stats = GramStats(3)
    for start in range(0, 90, 17):  # uneven batches, the last one short
        stats.update([torch.from_numpy(x[start : start + 17]) for x in xs])
    assert stats.n == 90
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert stats.linear_cka(a, b) == pytest.approx(cka_plain(xs[a], xs[b], hsic_biased), abs=1e-9)
        assert stats.debiased_cka(a, b) == pytest.approx(cka_plain(xs[a], xs[b], hsic_unbiased), abs=1e-9)
        whole = GramStats(2)
        whole.update([torch.from_numpy(xs[a]), torch.from_numpy(xs[b])])
        assert stats.linear_cka(a, b) == pytest.approx(whole.linear_cka(0, 1), abs=1e-12)


def test_self_similarity_and_invariances() -> None:
    x, y = _random(60, 8, 8, 5)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert linear_cka(tx, tx) == pytest.approx(1.0, abs=1e-12)
    assert debiased_cka(tx, tx) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(8, 8)))
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    variants = {
        "channel permutation": tx[:, perm],
        "orthogonal transform": tx @ torch.from_numpy(q),
        "isotropic scaling": tx * 7.5,
        "translation": tx + 4.0,
    }
    for what, changed in variants.items():
        assert linear_cka(changed, ty) == pytest.approx(linear_cka(tx, ty), abs=1e-9), what
        assert debiased_cka(changed, ty) == pytest.approx(debiased_cka(tx, ty), abs=1e-9), what
    assert linear_cka(tx, ty) < 0.99  # the check would be empty if x and y were already alike
    anisotropic = tx * torch.linspace(0.1, 10, 8, dtype=torch.float64)
    assert linear_cka(anisotropic, ty) != pytest.approx(linear_cka(tx, ty), abs=1e-3)


def test_undefined_without_variance_or_samples() -> None:
    x = torch.ones(10, 3, dtype=torch.float64)
    assert np.isnan(linear_cka(x, torch.randn(10, 3, dtype=torch.float64)))
    assert np.isnan(debiased_cka(torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)))


def test_layer_groups_fit_the_budget() -> None:
    widths = np.array([[32, 64, 512], [32, 64, 512]])
    assert layer_groups(widths, 32, 512) == [[0, 1, 2]]
    groups = layer_groups(widths, 32, 2)  # 2 MiB: the 512-channel layer needs a pass of its own
    assert groups == [[0, 1], [2]]


# -- models from the lab ------------------------------------------------------------------------------


@pytest.fixture
def cka_lab(lab):
    from swap_lab import make_lab

    return make_lab(lab)  # "toy" data, seg (UNet w4), ae, wide (w8)


def test_model_with_itself_is_one_on_every_layer(cka_lab) -> None:
    import shutil

    shutil.copy(cka_lab.path("checkpoints", "seg"), cka_lab.path("checkpoints", "seg-copy"))
    sim = run_cka(cka_lab, ["seg", "seg-copy", "ae"], "toy", device="cpu", batch=2)
    assert sim.pairs == [(0, 1), (0, 2), (1, 2)]
    assert len(sim.layers) == 23 and sim.samples == 6  # 18 numbered + up1-up4 + head; 2 val subjects x 3
    np.testing.assert_allclose(sim.linear[0], 1.0, atol=1e-9)
    np.testing.assert_allclose(sim.debiased[0], 1.0, atol=1e-9)
    assert np.all(sim.linear[1] < 1.0)
    np.testing.assert_allclose(sim.linear[1], sim.linear[2], atol=1e-12)  # seg and its copy see ae alike
    stored = read_similarity(cka_lab.path("comparisons", sim.name))
    assert is_cka(cka_lab.path("comparisons", sim.name))
    np.testing.assert_array_equal(stored.linear, sim.linear)
    assert stored.models == ["seg", "seg-copy", "ae"] and stored.layers == sim.layers


def test_streamed_run_equals_activations_in_memory(cka_lab) -> None:
    """The engine's streamed CKA of real models equals CKA of every activation held at once."""
    from reuse_console.engine.compare.features import hooked_module

    lab = cka_lab
    models = load_models(lab, ["seg", "wide"], "1,9,head", torch.device("cpu"))
    slices = load_slices(lab, "toy")
    batches, _ = eval_batches(slices, "all", batch=5)  # 12 slices in 3 batches
    for spec in (FeatureSpec("pooled"), FeatureSpec("pixels", pixels=10)):
        lin, deb, widths, rows, passes = measure(models, batches, spec, device=torch.device("cpu"), memory_mb=0.001)
        assert passes == 3 and rows == 12 * spec.rows_per_sample()
        assert list(widths[:, 0]) == [4, 8]  # UNet width 4 vs 8: CKA compares layers of any width
        if spec.mode == "pixels":
            continue
        held: list[list[torch.Tensor]] = [[], []]
        for m, (model, layers) in enumerate(zip(models.models, models.per_model)):
            modules = dict(model.named_modules())
            for layer in layers:
                acts: list[torch.Tensor] = []
                handle = modules[hooked_module(layer)].register_forward_hook(
                    lambda _m, _i, o, acts=acts: acts.append(o)
                )
                with torch.no_grad():
                    for b in batches:
                        model(b.images)
                handle.remove()
                held[m].append(torch.cat(acts).double().mean(dim=(2, 3)))
        for li in range(3):
            # centred first: some of these untrained layers vary by 1e-5 around a mean of 1, where the
            # uncentred Gram matrices of the plain formula would lose the digits that matter (HSIC is
            # translation invariant, so centring changes nothing else)
            x, y = (held[m][li].numpy() - held[m][li].numpy().mean(axis=0) for m in (0, 1))
            assert lin[0, li] == pytest.approx(cka_plain(x, y, hsic_biased), abs=1e-6)
            assert deb[0, li] == pytest.approx(cka_plain(x, y, hsic_unbiased), abs=1e-6)


def test_refusals(cka_lab) -> None:
    from swap_lab import make_checkpoint

    make_checkpoint(cka_lab, "psp", seed=4, arch="pspnet")
    with pytest.raises(UserError, match="one architecture"):
        run_cka(cka_lab, ["seg", "psp"], "toy", device="cpu")
    with pytest.raises(UserError, match="no checkpoint 'nope'"):
        run_cka(cka_lab, ["seg", "nope"], "toy", device="cpu")
    with pytest.raises(UserError, match="'nope'"):
        run_cka(cka_lab, ["seg", "ae"], "nope", device="cpu")
    with pytest.raises(UserError, match="at least two"):
        run_cka(cka_lab, ["seg"], "toy", device="cpu")
    with pytest.raises(UserError, match="--features"):
        run_cka(cka_lab, ["seg", "ae"], "toy", features="flat", device="cpu")
    assert not list(cka_lab.folder("comparisons").glob("*"))


def test_refuses_models_with_other_layers(cka_lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same architecture name, another layer index (a user model built with another config)."""
    from reuse_console.engine.compare import cka_lab as module
    from reuse_console.engine.models.layers import LayerIndex

    built = LayerIndex.from_model
    calls: list[int] = []

    def shorter_second(model, in_channels, size=64):
        index = built(model, in_channels, size=size)
        calls.append(1)
        return LayerIndex(index.layers[:-1]) if len(calls) == 2 else index

    monkeypatch.setattr(module.LayerIndex, "from_model", staticmethod(shorter_second))
    with pytest.raises(UserError, match="need the same layers"):
        run_cka(cka_lab, ["seg", "ae"], "toy", device="cpu")
