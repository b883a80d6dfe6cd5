"""The docs' numbers for the pinned default are what the code prints (``make results``, scripts/pinned_default.py).

Fast: every generated region of README.md and docs/results.md is what ``docs/pinned-default.json`` renders, and the
README's ``curl`` example sends the recorded request. Slow: a fresh default run and its served model give that
record (one fine-tune of the default, 1.5–3 minutes on 2 idle cores).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import CONF

sys.path.insert(0, str(CONF.parent / "scripts"))
import pinned_default
from pinned_default import README, REGIONS, documents, fill, read, readme_request, regions, render, stale

MARKER = re.compile(r"<!-- (?:end )?make results: ([\w-]+) -->")


@pytest.mark.parametrize("name", list(REGIONS))
def test_every_generated_region_shows_what_the_record_renders(name):
    shown = regions(REGIONS[name].read_text(encoding="utf-8")).get(name)
    assert shown == render(read())[name], f"{REGIONS[name].name}: {name} differs: run `make results --render`"


def test_no_other_file_has_a_generated_region():
    """Markers only where the script writes, each name once with its end marker."""
    docs = [README, *sorted((CONF.parent / "docs").glob("*.md"))]
    found = {path: MARKER.findall(path.read_text(encoding="utf-8")) for path in docs}
    placed = {path: sorted([name for name, at in REGIONS.items() if at == path] * 2) for path in docs}
    assert {path: sorted(names) for path, names in found.items()} == placed


def test_the_readme_curl_example_sends_the_recorded_request():
    assert readme_request(README.read_text(encoding="utf-8")) == read().request


def test_a_changed_digit_in_the_docs_is_found():
    texts = documents()
    pinned = read()
    assert stale(pinned, texts) == []
    body = render(pinned)["default-table"]
    changed = re.sub(r"\d(?=\]\s*\|\n)", lambda digit: str((int(digit[0]) + 1) % 10), body, count=1)
    assert changed != body
    results = REGIONS["default-table"]
    texts[results] = fill(texts[results], {"default-table": changed})
    assert stale(pinned, texts) == ["docs/results.md: default-table"]


def test_the_served_answer_is_shown_with_rounded_scores():
    answer = {"predictions": [{"categories": ["A", "B"], "scores": [0.81234567, 0.5]}]}
    assert pinned_default.rounded(answer) == '{"predictions": [{"categories": ["A", "B"], "scores": [0.812, 0.5]}]}'


@pytest.mark.slow
def test_the_record_is_what_the_default_run_and_its_served_model_give(tmp_path: Path):
    recorded = read()
    measured = pinned_default.measure(tmp_path, recorded.request)
    assert render(measured) == render(recorded), "the code prints other numbers: run `make results`"
    assert measured.finetune_id == recorded.finetune_id
