"""docs/architecture.md names only things that exist, the code cites it, not an outside
design file, and every relative link in README.md, bench/README.md and docs/*.md resolves
(to a file, and to a heading where it names one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("core", "store", "api", "orchestrator", "workers", "device_agent", "cli", "tests")


def named_in_doc() -> tuple[list[str], list[str]]:
    """(file paths, dotted names) the document writes in backticks."""
    prose = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)  # drop the diagrams
    spans = re.findall(r"`([^`]+)`", prose)
    paths = [
        s
        for s in spans
        if "/" in s
        and s.split("/")[0] in PACKAGES
        and " " not in s
        and not s.startswith(("http", "/"))
    ]
    dotted = [s for s in spans if re.fullmatch(r"(%s)(\.\w+)+" % "|".join(PACKAGES), s)]
    return paths, dotted


def test_every_path_in_the_architecture_doc_exists():
    paths, _ = named_in_doc()
    assert len(paths) > 40  # the doc really is a map
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == []


def test_every_dotted_name_in_the_architecture_doc_resolves():
    _, dotted = named_in_doc()
    assert len(dotted) > 10
    missing = []
    for name in dotted:
        parts = name.split(".")
        # the longest prefix that is a module; the rest must be attributes found in its source
        for cut in range(len(parts), 0, -1):
            base = ROOT.joinpath(*parts[:cut])
            module = next(
                (f for f in (base.with_suffix(".py"), base / "__init__.py") if f.exists()), None
            )
            if module is not None:
                source = module.read_text()
                if not all(
                    re.search(
                        rf"\b(def|class) {re.escape(attr)}\b"
                        rf"|\b{re.escape(attr)}\s*(:[^=\n]*)?="
                        rf"|import .*\b{re.escape(attr)}\b",
                        source,
                    )
                    for attr in parts[cut:]
                ):
                    missing.append(name)
                break
        else:
            missing.append(name)
    assert missing == []


def test_code_cites_the_projects_own_architecture_doc():
    offenders = [
        str(f.relative_to(ROOT))
        for pkg in PACKAGES
        for f in (ROOT / pkg).rglob("*.py")
        if f != Path(__file__).resolve() and "DESIGN.md" in f.read_text()
    ]
    assert offenders == []


# --- links -------------------------------------------------------------------------------

README = ROOT / "README.md"
LINKED_DOCS = [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (a `# comment` in a code block is
    no heading, and `[a](b)` inside backticks is no link)."""
    text = re.sub(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link: its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get -1, -2, ... as on
    GitHub."""
    text = re.sub(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", "", path.read_text(), flags=re.S | re.M)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    """The targets of the inline links and images in a Markdown file."""
    return re.findall(
        r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose(path.read_text())
    )


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    return broken


def test_the_link_checker_knows_githubs_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## How far a graph may stray, and the `lfm2` case\n"
        "## Quantized graphs' agreement\n## Notes\n## Notes\n"
        "```\n# not a heading\n[x](missing.md)\n```\n"
        "[a](#how-far-a-graph-may-stray-and-the-lfm2-case) [b](#notes-1) "
        "[c](page.md#quantized-graphs-agreement) [d](https://example.org/x) "
        "[e](#not-a-heading) [f](missing.md) [g](page.md#nowhere) `[h](gone.md)`\n"
    )
    found = broken_links(page)
    assert [f.split(" ")[0] for f in found] == ["#not-a-heading", "missing.md", "page.md#nowhere"]


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    assert broken_links(doc) == []


def test_the_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    targets = {t.partition("#")[0] for t in links(README)}
    # every page under docs/, and the benchmarks page, is one link away from the README
    pages = {str(p.relative_to(ROOT)) for p in LINKED_DOCS if p != README}
    assert pages - targets == set()


def test_the_metric_table_is_the_registrys_and_every_metric_and_operator_is_documented():
    """Registries loop into the docs: a new metric or operator fails here until a page says
    what it is."""
    from core import catalog
    from core.metric_registry import REGISTRY, metric_table

    assert metric_table() in DOC.read_text()  # regenerate: core.metric_registry.metric_table
    docs = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    assert [d.spelling for d in REGISTRY.values() if f"`{d.spelling}`" not in docs] == []
    assert [op for op in catalog.REGISTRY if f"`{op}`" not in docs] == []
