"""The documentation cannot rot silently: every relative link in README.md, docs/ and the model
card points at a file that exists (and at a heading that exists, where it names one), and every
`derain <subcommand>` written in them is a subcommand of the CLI, with options it has."""

import re
from pathlib import Path

import pytest

from derain.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "derain" / "checkpoints" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")
FENCED = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"(?:^|&&|;|\|)\s*derain ([a-z]+)([^#\n|;&]*)", re.MULTILINE)  # up to a comment or pipe


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _subcommands() -> dict[str, set[str]]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]  # argparse's own type
    return {name: {o for a in sub._actions for o in a.option_strings} for name, sub in action.choices.items()}


def test_the_docs_exist_and_the_front_page_is_short():
    assert (ROOT / "docs").is_dir() and len(PAGES) >= 7
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = page.read_text()
    links = [a or b for a, b in LINK.findall(text)]
    assert links or page.name != "README.md"
    for link in links:
        if re.match(r"[a-z]+://|mailto:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} does not exist"
        if anchor and target.suffix == ".md":
            anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.MULTILINE)}
            assert anchor in anchors, f"{page.name}: no heading #{anchor} in {path or page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_derain_command_is_a_real_subcommand_with_real_options(page):
    commands = _subcommands()
    text = page.read_text()
    code = [block.replace("\\\n", " ") for block in FENCED.findall(text)] + INLINE.findall(FENCED.sub("", text))
    found = [match for snippet in code for match in COMMAND.findall(snippet)]
    assert found or page.name in ("model.md",), f"{page.name}: no derain command found: is the pattern broken?"
    for name, rest in found:
        assert name in commands, f"{page.name}: `derain {name}` is not a subcommand"
        for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", rest):
            assert option in commands[name], f"{page.name}: `derain {name}` has no option {option}"
