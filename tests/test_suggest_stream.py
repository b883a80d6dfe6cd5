"""Streaming ``suggest``: any file size in flat memory, the same rows out, bad rows named and counted."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from experiments import suggest


class EchoModel:
    """Stands in for the logged model: ranks by the text's length, so every output row can be checked."""

    calls = 0

    def predict(self, frame: pd.DataFrame, params: dict) -> pd.DataFrame:
        self.calls += 1
        texts = list(frame["input"])
        return pd.DataFrame(
            {
                "categories": [[f"c{len(text) % 7}", "other"][: params["top_n"]] for text in texts],
                "scores": [[float(len(text)), 0.0][: params["top_n"]] for text in texts],
            }
        )


def generated_rows(n: int, bad_every: int = 0) -> Iterator[str]:
    """``n`` JSON Lines rows, made one at a time (never held as a list); every ``bad_every``-th row is bad."""
    for index in range(1, n + 1):
        if bad_every and index % bad_every == 0:
            yield '{"merchant_name": "Uber"}\n' if index % 2 else "not json\n"
        else:
            yield json.dumps({"input": f"transaction {index} " + "x" * (index % 13)}) + "\n"


def write(path: Path, rows: Iterator[str]) -> Path:
    with path.open("w", encoding="utf-8") as sink:
        sink.writelines(rows)
    return path


def stream(source: Path, *flags: str) -> tuple[EchoModel, Path]:
    args = suggest.parse_args(["model", "--input", str(source), "--no-progress", *flags])
    model = EchoModel()
    suggest.suggest_file(model, args, suggest.read_rows(source, strict=False))
    return model, suggest.output_path(args)


def test_streaming_writes_every_good_row_in_order_and_counts_the_bad(tmp_path: Path, capsys) -> None:
    source = write(tmp_path / "in.jsonl", generated_rows(1_000, bad_every=97))
    model, output = stream(source, "--batch-size", "64", "--top-n", "1")
    err = capsys.readouterr().err
    bad = [n for n in range(1, 1_001) if n % 97 == 0]
    assert "ranked 990 rows" in err and "skipped 10 bad rows" in err
    assert f"skipped: {source}:97: merchant_category: Field required" in err
    assert f"skipped: {source}:194: not valid JSON (Expecting value at column 1)" in err
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["line"] for row in written] == [n for n in range(1, 1_001) if n not in bad]
    texts = [json.loads(line)["input"] for n, line in enumerate(generated_rows(1_000, 97), 1) if n not in bad]
    assert [row["categories"] for row in written] == [[f"c{len(text) % 7}"] for text in texts]
    assert [row["scores"] for row in written] == [[float(len(text))] for text in texts]
    assert model.calls == -(-990 // 64)  # batches of 64 rows
    assert not list(tmp_path.glob("*.partial"))


def test_a_failing_stream_leaves_no_output_that_looks_complete(tmp_path: Path) -> None:
    source = write(tmp_path / "in.jsonl", generated_rows(500))

    class Failing(EchoModel):
        def predict(self, frame: pd.DataFrame, params: dict) -> pd.DataFrame:
            if self.calls == 2:
                raise RuntimeError("the model broke mid-file")
            return super().predict(frame, params)

    args = suggest.parse_args(["model", "--input", str(source), "--no-progress", "--batch-size", "100"])
    with pytest.raises(RuntimeError):
        suggest.suggest_file(Failing(), args, suggest.read_rows(source, strict=False))
    assert not suggest.output_path(args).exists()
    assert not list(tmp_path.glob("*.partial"))


def peak_bytes(source: Path) -> int:
    tracemalloc.start()
    try:
        stream(source, "--batch-size", "256")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_input_grows(tmp_path: Path, capsys) -> None:
    """Twenty times the rows cost no more memory: peak Python allocations are set by the batch, not the file."""
    small = peak_bytes(write(tmp_path / "small.jsonl", generated_rows(3_000, bad_every=101)))
    large = peak_bytes(write(tmp_path / "large.jsonl", generated_rows(60_000, bad_every=101)))
    capsys.readouterr()
    assert large < small * 1.3 + 256 * 1024, (small, large)
