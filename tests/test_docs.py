"""docs/architecture.md names only things that exist, and the code cites it, not an outside
design file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("core", "store", "api", "orchestrator", "workers", "device_agent", "cli", "tests")


def named_in_doc() -> tuple[list[str], list[str]]:
    """(file paths, dotted names) the document writes in backticks."""
    prose = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)  # drop the diagrams
    spans = re.findall(r"`([^`]+)`", prose)
    paths = [s for s in spans if "/" in s and s.split("/")[0] in PACKAGES
             and " " not in s and not s.startswith(("http", "/"))]
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
            module = next((f for f in (base.with_suffix(".py"), base / "__init__.py")
                           if f.exists()), None)
            if module is not None:
                source = module.read_text()
                if not all(re.search(rf"\b(def|class) {re.escape(attr)}\b|\b{re.escape(attr)} =|import .*\b{re.escape(attr)}\b",
                                     source) for attr in parts[cut:]):
                    missing.append(name)
                break
        else:
            missing.append(name)
    assert missing == []


def test_code_cites_the_projects_own_architecture_doc():
    offenders = [str(f.relative_to(ROOT)) for pkg in PACKAGES for f in (ROOT / pkg).rglob("*.py")
                 if f != Path(__file__).resolve() and "DESIGN.md" in f.read_text()]
    assert offenders == []
