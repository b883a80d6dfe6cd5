"""Rank categories for new transactions with a run's categoriser: ``python -m experiments.suggest``.

One transaction (flags, a JSON row or a query text), printed; or a JSON Lines file, ranked in batches and
written as JSON Lines. The model is the one MLflow logged for a run (``python run.py``; see
``experiments.serving``), named by a registered model URI (``models:/categoriser@champion``), a run id or a
fine-tune id. Examples::

    python -m experiments.suggest models:/categoriser@champion --input new.jsonl --output ranked.jsonl
    python -m experiments.suggest <run id> --merchant-name "Blue Bottle Coffee" --merchant-category Restaurants \\
        --department Engineering --location "San Francisco, CA" --amount 18.5 --spend-program-name "Team Budget"

A bad input row is reported as ``file:line: field: problem`` and skipped (or stops the run with ``--strict``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from experiments.datasets.jsonl import numbered_lines
from experiments.datasets.transactions import TransactionFields
from experiments.errors import DataError, UserError
from experiments.serving.categoriser import DEFAULT_TOP_N
from experiments.serving.rows import RowError, query_text

#: The transaction fields settable by flags (``--merchant-name`` ...), in the row order of docs/data-formats.md.
FLAG_FIELDS = tuple(name for name in TransactionFields.model_fields if name != "trip_name")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.suggest",
        description="Rank expense categories for transactions with a run's logged categoriser model.",
    )
    parser.add_argument(
        "model",
        help="models:/<name>@<alias> or models:/<name>/<version>, runs:/<run id>/categoriser, a run id, "
        "a fine-tune id (ft-...), or a downloaded model folder",
    )
    source = parser.add_argument_group("what to rank (one of)")
    source.add_argument("--input", type=Path, help="a JSON Lines file of transaction or {'input': text} rows")
    source.add_argument("--row", help="one row as JSON: a transaction or {'input': '<query text>'}")
    source.add_argument("--query", help="one query text, ranked as is")
    for name in FLAG_FIELDS:
        if name != "merchant_category":
            source.add_argument("--" + name.replace("_", "-"), type=float if name == "amount" else str)
    source.add_argument("--trip-name", help="optional; 'unknown' when left out")
    source.add_argument("--merchant-category", action="append", help="repeat for several merchant categories")
    parser.add_argument("--output", type=Path, help="output JSON Lines file (default: <input>.suggestions.jsonl)")
    parser.add_argument("--top-n", type=int, default=DEFAULT_TOP_N, help="categories per row (default: 5)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per model call (default: 256)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row instead of skipping it")
    parser.add_argument("--json", action="store_true", help="print a single row's result as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./outputs/mlflow.db)")
    return parser.parse_args(argv)


def single_row(args: argparse.Namespace) -> dict[str, Any] | None:
    """The one row given by ``--row``, ``--query`` or the transaction flags, or None for ``--input``."""
    flags = {name: getattr(args, name) for name in (*FLAG_FIELDS, "trip_name") if getattr(args, name) is not None}
    given = [name for name, value in (("--input", args.input), ("--row", args.row), ("--query", args.query)) if value]
    if len(given) + bool(flags) != 1:
        raise UserError(
            "give exactly one of --input FILE, --row JSON, --query TEXT or the transaction flags "
            "(--merchant-name ... --spend-program-name)"
        )
    if args.query is not None:
        return {"input": args.query}
    if args.row is not None:
        try:
            row = json.loads(args.row)
        except json.JSONDecodeError as error:
            raise UserError(f"--row: not valid JSON ({error.msg} at column {error.colno})") from None
        except RecursionError:
            raise UserError("--row: JSON nested too deeply (a row is one flat object)") from None
        if not isinstance(row, dict):
            raise UserError(f"--row: expected a JSON object, got {type(row).__name__}")
        return row
    if flags:
        return {"merchant_category": [], **flags}
    return None


def read_rows(path: Path, strict: bool) -> tuple[list[int], list[str], list[str]]:
    """Line numbers and query texts of the file's good rows, and a ``file:line: field: problem`` per bad row.

    Raises:
        DataError: the file is missing, a folder, unreadable or not UTF-8, or a row is bad and ``strict`` is set.
    """
    lines: list[int] = []
    texts: list[str] = []
    problems: list[str] = []
    for number, line in numbered_lines(path, "--input"):
        try:
            texts.append(query_text(json.loads(line)))
            lines.append(number)
        except json.JSONDecodeError as error:
            problems.append(f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno})")
        except RecursionError:
            problems.append(f"{path}:{number}: JSON nested too deeply (a row is one flat object)")
        except RowError as error:
            problems.append(f"{path}:{number}: {error}")
        if problems and strict:
            raise DataError(f"{problems[0]} (--strict stops at the first bad row)")
    return lines, texts, problems


def batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rank(model: Any, texts: Sequence[str], top_n: int, batch_size: int, progress: bool) -> list[dict[str, Any]]:
    """The model's ranking of every text, in batches of ``batch_size`` rows."""
    import pandas as pd

    results: list[dict[str, Any]] = []
    with tqdm(total=len(texts), desc="suggest", unit="row", disable=not progress) as bar:
        for batch in batches(texts, batch_size):
            frame = model.predict(pd.DataFrame({"input": list(batch)}), params={"top_n": top_n})
            for categories, scores in zip(frame["categories"], frame["scores"], strict=True):
                results.append({"categories": list(categories), "scores": [float(s) for s in scores]})
            bar.update(len(batch))
    return results


def suggest_file(model: Any, args: argparse.Namespace, rows: tuple[list[int], list[str], list[str]]) -> None:
    """Rank the good rows of ``--input`` (``read_rows``) and write ``--output`` atomically; report skipped rows."""
    from experiments.files import write_atomic

    lines, texts, problems = rows
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    output = args.output or args.input.with_name(args.input.name.removesuffix(".jsonl") + ".suggestions.jsonl")
    started = time.perf_counter()
    results = rank(model, texts, args.top_n, args.batch_size, progress=not args.no_progress)
    seconds = time.perf_counter() - started
    numbered = zip(lines, results, strict=True)
    write_atomic(output, "".join(json.dumps({"line": n, **r}, ensure_ascii=False) + "\n" for n, r in numbered))
    print(
        f"ranked {len(texts)} rows in {seconds:.1f} s ({len(texts) / seconds:.0f} rows/s), "
        f"skipped {len(problems)} bad rows; wrote {output}",
        file=sys.stderr,
    )


def one_text(row: dict[str, Any]) -> str:
    """The query text of the single row; a problem names the flag (``--amount: Field required``)."""
    try:
        return query_text(row)
    except RowError as error:
        field, _, message = str(error).partition(": ")
        flag = f"--{field.replace('_', '-')}" if field in (*FLAG_FIELDS, "trip_name") else field
        raise UserError(f"{flag}: {message}") from None


def suggest_one(model: Any, text: str, args: argparse.Namespace) -> None:
    """Rank one query text and print it: ``rank. category  score`` lines, or one JSON object with ``--json``."""
    [result] = rank(model, [text], args.top_n, args.batch_size, progress=False)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for position, (category, score) in enumerate(zip(result["categories"], result["scores"], strict=True), start=1):
        print(f"{position}. {category}  {score:.4f}")


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry: a user mistake exits 2 with one ``error:`` line, no traceback."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # schema notes on every batch
    try:
        if args.top_n < 1 or args.batch_size < 1:
            raise UserError(f"--top-n {args.top_n} and --batch-size {args.batch_size} must be at least 1.")
        # The input is checked before the model is loaded: a bad row costs no model load.
        row = single_row(args)
        text = one_text(row) if row is not None else None
        rows = read_rows(args.input, args.strict) if row is None else None
        if rows is not None and not rows[1]:
            raise DataError(f"{args.input}: no row to rank ({len(rows[2])} bad).")
        from experiments.serving.mlflow_model import connect, load, tracking_uri

        if not Path(args.model, "MLmodel").is_file():  # a downloaded model folder needs no store
            connect(tracking_uri(args.tracking_uri))
        model = load(args.model)
        if rows is not None:
            suggest_file(model, args, rows)
        elif text is not None:
            suggest_one(model, text, args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
