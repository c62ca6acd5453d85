"""README is a short front door and docs/ the manual: README stays within 200 lines, names no test, run date
or issue number, and links every page of docs/; every relative link in README and docs/ resolves, anchors
included; no docs/ heading carries an issue number, a date or a test name; every test the docs cite exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.paths import REPO

ROOT = REPO
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES]

TEST_NAME = re.compile(r"\btest_\w+")
ISSUE = re.compile(r"\bissues?\s*#?\d+|(?<![\w&/])#\d+\b", re.I)
MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
DATE = re.compile(rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b|\b\d{{1,2}} (?:{MONTHS})\w* \d{{4}}\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def headings(text: str) -> list[str]:
    return re.findall(r"^#{1,6} (.+)$", FENCE.sub("", text), re.M)


def anchors(path: Path) -> set[str]:
    """The fragment ids GitHub gives the headings of a markdown file."""
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(path.read_text(encoding="utf-8")):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_readme_is_a_front_door_of_at_most_200_lines():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert not TEST_NAME.findall(text), "README names tests"
    assert not ISSUE.findall(text), "README cites issue numbers"
    assert not DATE.findall(text), "README holds dates"
    first = [line for line in text.splitlines()[1:] if line.strip()]
    block = first.index("```bash")
    assert first[block + 1].startswith("make demo") and first[block + 2].startswith("make test")
    assert block <= 3, "the two commands come right after the summary"


def test_readme_links_every_page_of_docs():
    links = set(LINK.findall(README.read_text(encoding="utf-8")))
    targets = {link.split("#", 1)[0] for link in links}
    missing = [page.name for page in PAGES if f"docs/{page.name}" not in targets]
    assert PAGES and not missing, f"README does not link {missing}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    broken = []
    for link in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        file, _, fragment = link.partition("#")
        target = (path.parent / file).resolve() if file else path
        anchored = not fragment or target.suffix != ".md" or fragment in anchors(target)
        if not target.exists() or not anchored:
            broken.append(link)
    assert not broken, f"{path.name}: {broken}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_docs_heading_carries_an_issue_number_a_date_or_a_test_name(path):
    for heading in headings(path.read_text(encoding="utf-8")):
        assert not ISSUE.search(heading), heading
        assert not DATE.search(heading), heading
        assert not TEST_NAME.search(heading), heading


def test_every_test_the_docs_cite_exists():
    """A guarantee names the tests that hold it: a test renamed or moved takes its citation along."""
    sources = list((ROOT / "tests").rglob("*.py"))
    defined = {name for path in sources for name in re.findall(r"def (test_\w+)", path.read_text())}
    defined |= {path.stem for path in sources}
    cited = {name for page in PAGES for name in TEST_NAME.findall(page.read_text(encoding="utf-8"))}
    assert cited and not cited - defined, sorted(cited - defined)
