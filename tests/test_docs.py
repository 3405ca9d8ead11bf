"""The documents a newcomer reads first stay true: the README is a short front page that shows the two
commands, every relative link in README.md and docs/ reaches a file in the repository, every source
path they name exists, and docs/console.md's key map is the console's real key bindings."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
from textual.binding import Binding

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
NAMING_PAGES = [*PAGES, ROOT / "store" / "SCHEMA.md"]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# engine/swaps/scan.py, store/SCHEMA.md, tui/screens/, tests/support/ ... not preceded by a path character
PATH = re.compile(r"(?<![\w./<-])((?:engine|store|tui|tests|bench|examples)/[\w./+-]*)")


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_readme_is_a_front_page_with_the_two_commands() -> None:
    size = len(README.read_bytes())
    assert size < 15_000, f"README.md is {size} bytes: move reference material to docs/"
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_every_document_is_linked_from_the_readme() -> None:
    links = {Path(target.split("#")[0]) for target in LINK.findall(README.read_text())}
    assert {Path("docs") / page.name for page in DOCS} <= links


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    text = page.read_text()
    assert "../shared" not in text, f"{_rel(page)} points at ../shared/, which is not beside a clone"
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, or an anchor in the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
    assert not broken, f"{_rel(page)}: links to nothing in the repository: {broken}"


@pytest.mark.parametrize("page", NAMING_PAGES, ids=_rel)
def test_named_source_paths_exist(page: Path) -> None:
    named = {m.rstrip(".,:;") for m in PATH.findall(page.read_text())}
    named = {n for n in named if "*" not in n}
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"{_rel(page)} names paths that do not exist: {missing}"


def test_path_pattern_finds_paths_and_only_paths() -> None:
    text = "see `engine/swaps/scan.py`, store/SCHEMA.md. Not lab/store/x, reuse_console/engine/a.py or restore/x"
    assert sorted(m.rstrip(".,:;") for m in PATH.findall(text)) == ["engine/swaps/scan.py", "store/SCHEMA.md"]


# --- the key map --------------------------------------------------------------------------------

KEY_NAMES = {
    "enter": "enter",
    "esc": "escape",
    "space": "space",
    "tab": "tab",
    "←": "left",
    "→": "right",
    "↑": "up",
    "↓": "down",
    "/": "slash",
}


def _textual_key(written: str) -> str:
    """`Ctrl+P` -> `ctrl+p`, `Esc` -> `escape`, `W` -> `W` (Textual's name for shift+w), `/` -> `slash`."""
    *modifiers, key = written.split("+") if len(written) > 1 else [written]
    if key.lower() in KEY_NAMES:
        key = KEY_NAMES[key.lower()]
    elif modifiers or len(key) > 1:
        key = key.lower()  # Ctrl+P is ctrl+p; a lone letter keeps its case (W is shift+w)
    return "+".join([*(m.lower() for m in modifiers), key])


def documented_bindings() -> dict[str, set[str]]:
    """Binding id -> keys, from the rows of docs/console.md's key map that name a binding id."""
    text = (ROOT / "docs" / "console.md").read_text()
    section = text[text.index("## Key map") :]
    section = section[: section.index("\n## ", 1)]
    out: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[3].startswith("`"):
            continue
        ids = re.findall(r"`([^`]+)`", cells[3])
        assert len(ids) == 1, f"one binding id per key-map row: {line}"
        assert ids[0] not in out, f"binding {ids[0]} is documented twice"
        out[ids[0]] = {_textual_key(k) for k in re.findall(r"`([^`]+)`", cells[1])}
    return out


def app_bindings() -> dict[str, set[str]]:
    """Binding id -> keys, from the Binding objects of the app, its screens and its widgets."""
    from reuse_console.tui import app, screens, widgets

    classes = [app.ConsoleApp]
    for package in (screens, widgets):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            classes += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    out: dict[str, set[str]] = {}
    for cls in classes:
        for binding in cls.__dict__.get("BINDINGS", []):
            assert isinstance(binding, Binding) and binding.id, f"{cls.__name__}: every binding needs an id"
            assert binding.id not in out, f"binding id {binding.id} is used twice"
            out[binding.id] = {k.strip() for k in binding.key.split(",")}
    return out


def test_key_spelling_in_the_docs_maps_to_textual_key_names() -> None:
    assert [_textual_key(k) for k in ("Ctrl+P", "Esc", "Enter", "Space", "→", "/", "W", "w", "Shift+Tab")] == [
        "ctrl+p",
        "escape",
        "enter",
        "space",
        "right",
        "slash",
        "W",
        "w",
        "shift+tab",
    ]


def test_key_map_matches_the_console_bindings_both_ways() -> None:
    documented, real = documented_bindings(), app_bindings()
    assert len(real) > 40  # the app, five screens, the forms and the modals
    undocumented = sorted(set(real) - set(documented))
    assert not undocumented, f"bindings missing from docs/console.md's key map: {undocumented}"
    stale = sorted(set(documented) - set(real))
    assert not stale, f"docs/console.md documents bindings the console does not have: {stale}"
    wrong = {i: (sorted(documented[i]), sorted(real[i])) for i in real if documented[i] != real[i]}
    assert not wrong, f"documented keys differ from the bindings (docs, code): {wrong}"
