"""Every citation the project prints or ships points at a file (and section) the repository has.

Scanned: the README, docs/, every source file, the ``--help`` of every command and a generated
report. A citation is a ``docs/<file>.md`` path with optional ``§N.M`` sections (``§3.1–3.2``,
``§3.1 and §3.3–3.5``), a relative Markdown link inside docs/, a README section named in quotes
(``README 'How a model is read'``) or linked (``[text](#anchor)``), or a repository path such as
``codesign/progress.py``. A ``§`` that follows no document, and any mention of the design notes
kept outside the repository, is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codesign.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("README.md", "Makefile", "pyproject.toml", "docs", "codesign", "hw", "sim", "templates", "examples",
           "bench", "tests")
SUFFIXES = {".py", ".md", ".j2", ".toml", ".txt", ""}
SKIPPED = {"tests/baselines"}  # synthesis baselines: measured data, owned by the synthesis tests

# Notes the developers keep next to the repository, which a clone does not have. (Spelled in
# pieces so that this file does not cite them itself.)
OUTSIDE = re.compile("|".join([r"\bDESIGN(?:\.md)?\s+(?:section\s+)?\d", r"DESIGN\.md", "anchors" + r"\.md",
                               "seeds" + r"\.md", "toolchain" + r"\.md", "STYLE" + r"\.md", r"\.\./" + "shared",
                               "shared/" + "reference"]))
NUMBER = r"\d+(?:\.\d+)*"
SECTION = rf"§({NUMBER})(?:–({NUMBER}))?"
DOC_CHAIN = re.compile(rf"(?<![\w/.-])(docs/[\w.-]+\.md)((?:\s*(?:,\s*|\s+and\s+|\s+)?{SECTION})*)")
README_QUOTED = re.compile(r"README(?:\.md)?,?\s+(?:section\s+)?['\"“‘]([^'\"”’]+)['\"”’]")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
# (``codesign/hw/…`` and the like are paths inside the installed package, not in the repository.)
REPO_PATH = re.compile(r"(?<![\w/.<>-])((?:codesign/(?!hw/|sim/|templates/|examples/)|hw/|sim/|templates/|examples/|bench/"
                       r"|tests/)[\w/.-]*\w\.(?:py|md|j2|lib|toml))\b")


def headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text().splitlines() if re.match(r"#{1,6}\s", line)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def has_section(path: Path, number: str) -> bool:
    return any(re.match(rf"{re.escape(number)}(?:\.|\s|$)", h) for h in headings(path))


def problems_in(text: str, where: str, base: Path = ROOT, markdown: bool = True) -> list[str]:
    """The broken citations in ``text``. ``where`` names the text (a bare ``§N`` in a file of docs/
    refers to that file); Markdown links are checked when ``markdown`` and resolve against ``base``."""
    found = [f"{where}: cites '{m.group(0)}', which is not in the repository" for m in OUTSIDE.finditer(text)]
    rest = text
    for m in DOC_CHAIN.finditer(text):
        doc = ROOT / m.group(1)
        if not doc.is_file():
            found.append(f"{where}: {m.group(1)} does not exist")
        else:
            for first, last in re.findall(SECTION, m.group(2)):
                for number in filter(None, (first, last)):
                    if not has_section(doc, number):
                        found.append(f"{where}: {m.group(1)} has no section {number}")
        rest = rest.replace(m.group(0), " ", 1)
    own = ROOT / where if where.startswith("docs/") else None
    for m in re.finditer(rf"§\s*({NUMBER})(?:–({NUMBER}))?", rest):
        if own is not None:
            for number in filter(None, m.groups()):
                if not has_section(own, number):
                    found.append(f"{where}: no section {number} in this file")
            continue
        context = rest[max(0, m.start() - 30):m.end() + 10].replace("\n", " ")
        found.append(f"{where}: '§' without the document it refers to: …{context}…")
    readme = ROOT / "README.md"
    for m in README_QUOTED.finditer(text):
        name = " ".join(m.group(1).replace("`", "").split()).lower()
        if not any(name in h.replace("`", "").lower() for h in headings(readme)):
            found.append(f"{where}: README has no section '{m.group(1)}'")
    for m in MD_LINK.finditer(text) if markdown else ():
        target = m.group(1)
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (base / file) if file else None
        if path is not None and not path.exists():
            found.append(f"{where}: link to {target}: no such file")
        elif anchor and (path is None or path.suffix == ".md"):
            doc = path or (base / where if (base / where).is_file() else readme)
            if anchor not in {slug(h) for h in headings(doc)}:
                found.append(f"{where}: link to {target}: no such heading")
    for m in REPO_PATH.finditer(text):
        if not (ROOT / m.group(1)).exists():
            found.append(f"{where}: {m.group(1)} does not exist")
    return found


def shipped_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in candidates:
            rel = file.relative_to(ROOT).as_posix()
            if file.suffix in SUFFIXES and not any(rel.startswith(s) for s in SKIPPED) \
                    and "__pycache__" not in rel and file != Path(__file__).resolve():
                files.append(file)
    return files


def test_the_checker_finds_broken_citations():
    text = ("see DESIGN section 3, docs/design.md §3.8 and §99, docs/nowhere.md, a bare §3.4, "
            "README 'No such section', [x](#no-such-anchor) and codesign/no_such_module.py")
    problems = problems_in(text, "README.md")
    assert len(problems) == 7, problems
    good = ("docs/design.md §3.1–3.2, docs/design.md §3.1 and §3.3–3.5, docs/cost-models.md §2.6, "
            "README 'How a model is read', [c](#cost-models), codesign/cli.py")
    assert problems_in(good, "README.md") == []


def test_shipped_files_cite_only_what_the_repository_has():
    problems = []
    for file in shipped_files():
        rel = file.relative_to(ROOT).as_posix()
        problems += problems_in(file.read_text(errors="replace"), rel, file.parent, markdown=file.suffix == ".md")
    assert problems == []


def test_every_help_text_cites_only_what_the_repository_has():
    parser = build_parser()
    texts = {"codesign": parser.format_help()}
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in commands.choices.items():
        texts[f"codesign {name} --help"] = sub.format_help()
    assert len(texts) == 1 + len(commands.choices) >= 10
    problems = [p for where, text in texts.items() for p in problems_in(" ".join(text.split()), where, markdown=False)]
    assert problems == []


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("refs") / "out"
    assert main(["generate", "--out", str(out)]) == 0
    return out / "report"


def test_generated_report_cites_only_what_the_repository_has(report):
    problems = []
    for name in ("report.md", "report.html"):
        problems += problems_in(report.joinpath(name).read_text(), name)
    assert problems == []
