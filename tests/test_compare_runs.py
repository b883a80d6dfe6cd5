"""scripts/compare_runs.py: runs of different sweeps, paired on the same eval queries."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import compare_runs

RELEASE_0_1 = Path(__file__).parent / "data" / "run-folder-0.1"


def copy_with(tmp_path: Path, name: str, change) -> Path:
    folder = tmp_path / name
    shutil.copytree(RELEASE_0_1, folder)
    rows = [json.loads(line) for line in (folder / "per_query.jsonl").read_text().splitlines()]
    for position, row in enumerate(rows):
        change(position, row)
    (folder / "per_query.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_a_run_that_gets_more_queries_right_shows_a_positive_paired_delta(tmp_path: Path, capsys) -> None:
    def right_first(position: int, row: dict) -> None:
        if position < 10:
            row["reranker"]["mrr@1"] = 1.0
            row["reranked_top"][0] = row["expected"][0]

    better = copy_with(tmp_path, "better", right_first)
    assert compare_runs.main([str(RELEASE_0_1), str(RELEASE_0_1), str(better)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[2].startswith("| run-folder-0.1 |") and "— (reference)" in lines[2]
    assert "| +0.000 [+0.000, +0.000] | 1.000 | 0 |" in lines[3]
    reference = [json.loads(line)["reranker"]["mrr@1"] for line in (RELEASE_0_1 / "per_query.jsonl").open()]
    gain = sum(1.0 - value for value in reference[:10]) / len(reference)
    assert f"| +{gain:.3f} [" in lines[4]
    assert lines[4].endswith(f"| {sum(value < 1.0 for value in reference[:10])} |")  # top-1 changed


def test_runs_on_other_queries_are_refused(tmp_path: Path, capsys) -> None:
    other = copy_with(tmp_path, "other", lambda position, row: row.update(query=row["query"] + " (other)"))
    assert compare_runs.main([str(RELEASE_0_1), str(other)]) == 2
    assert "other queries" in capsys.readouterr().err


def test_a_folder_that_is_no_run_is_one_line(tmp_path: Path, capsys) -> None:
    assert compare_runs.main([str(RELEASE_0_1), str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "metrics.json" in error and len(error.strip().splitlines()) == 1


@pytest.mark.parametrize("metric", ["mrr@5", "recall@5"])
def test_another_metric_can_be_compared(metric: str, capsys) -> None:
    assert compare_runs.main([str(RELEASE_0_1), str(RELEASE_0_1), "--metric", metric]) == 0
    assert f"eval {metric}, first seed" in capsys.readouterr().out
