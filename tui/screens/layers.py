"""The Layers screen: a checkpoint's Conv/BN layers in the paper's numbering, with tensor statistics.

Each layer node lists its kinds; each kind node shows shape, mean, std and a histogram. With a
second checkpoint ("compare with") each tensor also shows its RMSE to it and the tree is
coloured by relative RMSE. Models are loaded and statistics computed by `engine.stats` in a
thread worker.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static, Tree

from reuse_console.engine.compare.stats import CheckpointLayers, KindStats, LayerStats

from ..widgets.charts import hist_bars, ratio_style
from .base import ConsoleScreen
from .pick import Choices, PickModal, entry_choices

WIDE = 120  # from this width on, kind nodes also show min, max and L2 inline


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def layer_label(layer: LayerStats, compared: bool, similar: Any = None) -> Text:
    """`  3  enc2.conv1 + enc2.bn1   RM RV RW RB W B   max rel RMSE 0.41 al 0.12 CKA 0.93`: raw, aligned
    (`similar`: engine/compare/layer_similarity.py, once computed) and CKA side by side."""
    name = f"{layer.name:>4}" if layer.index is not None else f"{layer.name:>4}"
    text = Text.assemble((name, "bold"), "  ", (" + ".join(layer.modules), ""), "  ")
    text.append(" ".join(k.kind for k in layer.kinds), style="cyan")
    if compared:
        worst = layer.max_rel_rmse
        text.append(f"  max rel RMSE {worst:.3g}" if worst is not None else "", style=ratio_style(worst))
    if similar is not None:
        aligned = [similar.aligned_relative[k.key] for k in layer.kinds if k.key in similar.aligned_relative]
        if aligned:
            text.append(f" al {max(aligned):.3g}", style=ratio_style(max(aligned)))
        cka = similar.cka.get(layer.name)
        if cka is not None and cka == cka:
            text.append(f" CKA {cka:.2f}", style="green" if cka >= 0.9 else "yellow" if cka >= 0.5 else "red")
    return text


def kind_label(kind: KindStats, wide: bool, similar: Any = None) -> Text:
    """`RM 16        μ+0.012 σ0.301 ▁▂▅█▅▂▁  RMSE 0.12 al 0.03` (al: after alignment)."""
    s = kind.stats
    text = Text.assemble((f"{kind.kind:<2} ", "bold cyan"), (f"{shape_text(kind.shape):<11} ", ""))
    text.append(f"μ{s.mean:+.3f} σ{s.std:.3f} ")
    if wide:
        text.append(f"[{s.min:+.3f}, {s.max:+.3f}] L2 {s.l2:.3f} ", style="")
    text.append_text(hist_bars(s.hist))
    if kind.rmse is not None:
        text.append(f" RMSE {kind.rmse:.3g}", style=ratio_style(kind.rel_rmse))
    if similar is not None and kind.key in similar.aligned:
        text.append(f" al {similar.aligned[kind.key]:.3g}", style=ratio_style(similar.aligned_relative[kind.key]))
    return text


def kind_detail(kind: KindStats, compare_with: str | None, similar: Any = None) -> Text:
    """The full line under the tree for the highlighted tensor."""
    s = kind.stats
    text = Text.assemble((kind.key, "bold"), f"  {shape_text(kind.shape)}  n={s.numel}\n")
    text.append(f"mean {s.mean:+.4g}  std {s.std:.4g}  min {s.min:+.4g}  max {s.max:+.4g}  L2 {s.l2:.4g}")
    if kind.rmse is not None and compare_with:
        rel = f" (rel {kind.rel_rmse:.3g})" if kind.rel_rmse is not None else ""
        text.append(f"\nRMSE to {compare_with} {kind.rmse:.4g}{rel}", style=ratio_style(kind.rel_rmse))
        if similar is not None and kind.key in similar.aligned:
            after = similar.aligned_relative[kind.key]
            text.append(
                f", after alignment {similar.aligned[kind.key]:.4g} (rel {after:.3g})", style=ratio_style(after)
            )
    return text


class LayersScreen(ConsoleScreen):
    """Browse one checkpoint's layers; `c` compares with a second checkpoint."""

    MODE = "layers"
    BINDINGS: ClassVar = [
        Binding("o", "pick_checkpoint", "Open", id="layers.open"),
        Binding("c", "pick_compare", "Compare", id="layers.compare"),
        Binding("x", "clear_compare", "Clear", id="layers.clear_compare"),
        Binding("e", "expand_all", "Expand", id="layers.expand"),
        Binding("w", "swap_from_here", "Swap", id="layers.swap"),
    ]

    class Loaded(Message):
        def __init__(self, layers: CheckpointLayers) -> None:
            super().__init__()
            self.layers = layers

    class Similar(Message):
        """Aligned RMSE and CKA of the compared pair (engine/compare/layer_similarity.py)."""

        def __init__(self, similar: Any) -> None:
            super().__init__()
            self.similar = similar

    def __init__(self) -> None:
        super().__init__()
        self.checkpoint: str | None = None
        self.compare_with: str | None = None
        self.data: CheckpointLayers | None = None
        self.similar: Any = None  # LayerSimilarity of the compared pair, once computed
        self._wide = False

    def compose_body(self) -> ComposeResult:
        yield Static(
            "No checkpoint open: press o to choose one, or Enter on a checkpoint in the Lab (1).", id="layers-head"
        )
        tree: Tree[Any] = Tree("layers", id="layers-tree")
        tree.show_root = False
        tree.guide_depth = 2
        yield tree
        yield Static("", id="layers-detail")

    # -- opening -------------------------------------------------------------------------------

    def open_checkpoint(self, checkpoint: str, compare_with: str | None = None) -> None:
        """Show `checkpoint` (and its RMSE to `compare_with`)."""
        self.checkpoint = checkpoint
        self.compare_with = compare_with
        self.set_note(checkpoint + (f" vs {compare_with}" if compare_with else ""))
        self.query_one("#layers-head", Static).update(f"loading {checkpoint}...")
        self.load(checkpoint, compare_with)

    @work(thread=True, exclusive=True, exit_on_error=False, group="layers-load", name="loading the checkpoint")
    def load(self, checkpoint: str, compare_with: str | None) -> None:
        from reuse_console.engine.compare.stats import checkpoint_layers

        self.post_message(self.Loaded(checkpoint_layers(self.console.lab, checkpoint, compare_with)))

    def worker_failed(self, worker: Any) -> None:
        if self.data is None:
            self.query_one("#layers-head", Static).update("Press o to open a checkpoint.")

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.data = message.layers
        self.similar = None
        self._wide = self.size.width >= WIDE
        self._build_tree()
        self.query_one("#layers-tree", Tree).focus()
        if self.data.compare_with is not None:
            self.measure_similarity(self.data.checkpoint, self.data.compare_with)

    @work(thread=True, exclusive=True, exit_on_error=False, group="layers-similar", name="aligning and CKA")
    def measure_similarity(self, checkpoint: str, other: str) -> None:
        from reuse_console.engine.compare.layer_similarity import layer_similarity

        self.post_message(self.Similar(layer_similarity(self.console.lab, checkpoint, other)))

    @on(Similar)
    def _similar(self, message: Similar) -> None:
        data = self.data
        if data is None or (data.checkpoint, data.compare_with) != (message.similar.checkpoint, message.similar.other):
            return  # another checkpoint was opened meanwhile
        self.similar = message.similar
        self._build_tree()

    def _build_tree(self) -> None:
        data = self.data
        if data is None:
            return
        compared = data.compare_with is not None
        head = Text.assemble(
            (data.checkpoint, "bold"),
            f"  {data.arch} {data.task} on {data.data or '?'}  ",
            (f"{sum(1 for layer in data.layers if layer.index is not None)} numbered layers", ""),
        )
        if compared:
            head.append(f"  RMSE to {data.compare_with}", style="yellow")
            similar = self.similar
            if similar is None:
                head.append("; aligning, CKA...", style="dim")
            else:
                head.append("; al: after alignment" + (f", CKA on {similar.data}" if similar.cka else ""), style="dim")
                for note in similar.notes:
                    head.append(f"; {note}", style="dim")
        self.query_one("#layers-head", Static).update(head)
        tree = self.query_one("#layers-tree", Tree)
        cursor = tree.cursor_line
        expanded = {str(n.data.name) for n in tree.root.children if n.is_expanded and isinstance(n.data, LayerStats)}
        tree.clear()
        for layer in data.layers:
            label = layer_label(layer, compared, self.similar)
            node = tree.root.add(label, data=layer, expand=layer.name in expanded)
            for kind in layer.kinds:
                node.add_leaf(kind_label(kind, self._wide, self.similar), data=kind)
        tree.cursor_line = cursor if self.similar is not None else 0

    def on_resize(self) -> None:
        wide = self.size.width >= WIDE
        if wide != self._wide:
            self._wide = wide
            self._build_tree()

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        detail = self.query_one("#layers-detail", Static)
        item = event.node.data
        if isinstance(item, KindStats):
            detail.update(kind_detail(item, self.compare_with, self.similar))
        elif isinstance(item, LayerStats):
            sizes = ", ".join(f"{k.kind} {shape_text(k.shape)}" for k in item.kinds)
            detail.update(Text.assemble((f"layer {item.name}", "bold"), f"  {' + '.join(item.modules)}\n{sizes}"))

    # -- choosing ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="layers-choices", name="listing checkpoints")
    def list_checkpoints(self, purpose: str) -> None:
        self.post_message(Choices(purpose, entry_choices(self.console.lab.entries("checkpoints"))))

    def action_pick_checkpoint(self) -> None:
        self.list_checkpoints("open")

    def action_pick_compare(self) -> None:
        if self.checkpoint is None:
            self.notify("Open a checkpoint first (o).", severity="warning")
            return
        self.list_checkpoints("compare")

    @on(Choices)
    def _choices(self, message: Choices) -> None:
        if message.purpose == "open":
            title, current = "Open checkpoint", self.checkpoint
        else:
            title, current = f"Compare {self.checkpoint} with", self.compare_with
        empty = "no checkpoints yet: train one from Jobs (5, then t)"

        def chosen(ref: str | None) -> None:
            if ref is None:
                return
            if message.purpose == "open":
                self.open_checkpoint(ref, None)
            elif self.checkpoint is not None:
                self.open_checkpoint(self.checkpoint, ref)

        self.app.push_screen(PickModal(title, message.choices, current, empty), chosen)

    def action_clear_compare(self) -> None:
        if self.checkpoint is not None and self.compare_with is not None:
            self.open_checkpoint(self.checkpoint, None)

    def action_expand_all(self) -> None:
        tree = self.query_one("#layers-tree", Tree)
        if any(not n.is_expanded for n in tree.root.children):
            tree.root.expand_all()
        else:
            for node in tree.root.children:
                node.collapse()

    def action_swap_from_here(self) -> None:
        """Open the Swap lab with this checkpoint as recipient and the compared one as donor."""
        self.console.open_swap(self.checkpoint, self.compare_with, None)

    def palette_commands(self):
        yield ("Layers: open checkpoint", "Choose the checkpoint to browse", self.action_pick_checkpoint)
        yield ("Layers: compare with", "Show each tensor's RMSE to a second checkpoint", self.action_pick_compare)
