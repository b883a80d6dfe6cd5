"""The README stays true: short, every relative link resolves, every ``run.py`` command composes with Hydra.

The commands are composed with Hydra's compose API against ``conf/`` (nothing runs): an option, key or value that
no longer exists (``reranker.distinct_positives=true`` after it became ``reranker.batches=...``) fails here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = CONF.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_LINES = 300

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SHELL = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)
COMMENT = re.compile(r"\s+#\s.*$")
PLACEHOLDER = re.compile(r"<[^>]+>")


def prose(text: str) -> str:
    """The text outside fenced code blocks (a ``#`` comment in a shell block is no heading)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(heading) for heading in HEADING.findall(prose(path.read_text(encoding="utf-8")))}


def relative_links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def broken(path: Path) -> list[str]:
    found = []
    for target in relative_links(path):
        name, _, anchor = target.partition("#")
        linked = (path.parent / name).resolve() if name else path
        if not linked.exists():
            found.append(f"{path.name}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            found.append(f"{path.name}: {target} (no such heading)")
    return found


def run_commands(text: str) -> list[list[str]]:
    """The overrides of every ``python run.py ...`` line in the README's shell blocks (continuations joined, the
    trailing comment, ``-m`` and placeholders such as ``<date>`` dropped)."""
    commands = []
    for block in SHELL.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            _, found, overrides = COMMENT.sub("", line).partition("python run.py")
            if found:
                words = shlex.split(PLACEHOLDER.sub("x", overrides))
                commands.append([word for word in words if word != "-m"])
    return commands


def jobs(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each swept override (``k=2,4`` → ``k=2`` and ``k=4``), the others at their
    first value: every value composes without composing the whole grid."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [
        [f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()] if o.is_sweep_override() else [text]
        for o, text in zip(parsed, overrides, strict=True)
    ]
    first = [choices[0] for choices in values]
    return [first] + [
        [*first[:at], value, *first[at + 1 :]] for at, choices in enumerate(values) for value in choices[1:]
    ]


COMMANDS = run_commands(README.read_text(encoding="utf-8"))
DOC_FILES = sorted(DOCS.glob("*.md"))


def test_the_readme_is_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines; move measurements and long explanations to docs/"


@pytest.mark.parametrize("path", [README, *DOC_FILES], ids=lambda path: path.name)
def test_every_relative_link_resolves(path):
    assert not broken(path)


def test_the_docs_index_lists_every_doc():
    listed = {Path(target.partition("#")[0]).name for target in relative_links(DOCS / "README.md")}
    assert {path.name for path in DOC_FILES if path.name != "README.md"} <= listed


def test_the_readme_has_run_commands_to_check():
    assert len(COMMANDS) >= 30 and ["dataset=banking77", "dataset.shots=30"] in COMMANDS


@pytest.mark.parametrize("overrides", COMMANDS, ids=" ".join)
def test_every_readme_run_command_composes(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for job in jobs(overrides):
            compose("config", overrides=job, return_hydra_config=True)


def test_a_stale_option_fails_the_check():
    """The check is not vacuous: the old ``distinct_positives`` knob no longer composes."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"), pytest.raises(Exception, match="distinct"):
        compose("config", overrides=["reranker.distinct_positives=true"], return_hydra_config=True)
