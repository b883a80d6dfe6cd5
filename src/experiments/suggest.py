"""Rank categories for new transactions with a run's categoriser: ``python -m experiments.suggest``.

One transaction (flags, a JSON row or a query text), printed; or a JSON Lines file of any size, streamed: read,
ranked and written as JSON Lines one batch at a time, in constant memory, with a progress bar in rows/s. The
model is the one MLflow logged for a run (``python run.py``; see ``experiments.serving``), named by a registered
model URI (``models:/categoriser@champion``), a run id or a fine-tune id. Examples::

    python -m experiments.suggest models:/categoriser@champion --input new.jsonl --output ranked.jsonl
    python -m experiments.suggest <run id> --merchant-name "Blue Bottle Coffee" --merchant-category Restaurants \\
        --department Engineering --location "San Francisco, CA" --amount 18.5 --spend-program-name "Team Budget"

A bad input row is reported as ``file:line: field: problem`` and skipped (or stops the run with ``--strict``).
``--input -`` reads standard input (a FIFO or ``/dev/stdin`` are read too), ranked to standard output unless
``--output`` names a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tqdm.auto import tqdm

from experiments.datasets.jsonl import numbered_lines
from experiments.datasets.transactions import QUERY_FIELDS, TransactionFields
from experiments.errors import DataError, UserError
from experiments.serving.categoriser import DEFAULT_TOP_N
from experiments.serving.rows import RowError, query_text
from experiments.threads import passive_waits, share_the_cpu

T = TypeVar("T")

#: The transaction fields settable by flags (``--merchant-name`` ...), in the row order of docs/data-formats.md.
FLAG_FIELDS = tuple(name for name in TransactionFields.model_fields if name != "trip_name")
#: ``--input -`` and ``--output -``: standard input and standard output, as every command-line tool spells them.
STANDARD = Path("-")


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
    source.add_argument(
        "--input", type=Path, help="a JSON Lines file of transaction or {'input': text} rows; - for standard input"
    )
    source.add_argument("--row", help="one row as JSON: a transaction or {'input': '<query text>'}")
    source.add_argument("--query", help="one query text, ranked as is")
    for name in FLAG_FIELDS:
        if name != "merchant_category":
            # --amount too is kept as typed: the row's own check (a finite number) judges it, as it does in a file.
            source.add_argument("--" + name.replace("_", "-"))
    source.add_argument("--trip-name", help="optional; 'unknown' when left out")
    source.add_argument("--merchant-category", action="append", help="repeat for several merchant categories")
    parser.add_argument(
        "--output",
        type=Path,
        help="output JSON Lines file, - for standard output (default: <input>.suggestions.jsonl beside a file; "
        "standard output for -, a pipe or a device)",
    )
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


@dataclass(frozen=True)
class RowCount:
    """What a first pass over ``--input`` found: rows to rank and bad rows to skip."""

    good: int
    bad: int


def is_stream(path: Path) -> bool:
    """``-``, or a file that can be read only once: a pipe (a FIFO, ``/dev/stdin`` on a pipe, ``<(...)``), a
    character device or a socket."""
    if path == STANDARD:
        return True
    try:
        mode = path.stat().st_mode
    except OSError:  # missing or unreadable: reading it says which
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def shown(path: Path, standard: str = "<stdin>") -> str:
    """What messages call ``path``: ``<stdin>`` (or ``<stdout>``) for ``-``."""
    return standard if path == STANDARD else str(path)


@contextmanager
def readable_copy(path: Path) -> Iterator[Path]:
    """``path`` itself, or for a stream (``is_stream``) a temporary copy of it, deleted on exit.

    The input is read twice: counted and checked before the model loads (a bad row costs no model load), then
    ranked. A stream cannot be read twice, so it is copied to disk as it arrives (memory stays flat) and both
    passes read the copy; line numbers are the stream's.

    Raises:
        DataError: the stream cannot be read, or the copy cannot be written (a full disk).
    """
    if not is_stream(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="suggest-input-") as folder:
        copy = Path(folder) / "input.jsonl"
        try:
            with copy.open("wb") as sink:
                if path == STANDARD:
                    shutil.copyfileobj(sys.stdin.buffer, sink)
                else:
                    with path.open("rb") as stream:
                        shutil.copyfileobj(stream, sink)
        except OSError as error:
            raise DataError(
                f"{shown(path)}: could not be read into a temporary file in {folder} ({error.strerror or error}); "
                "save the rows to a file and give --input that file."
            ) from None
        yield copy


def parsed_rows(
    path: Path, fields: Sequence[str] = QUERY_FIELDS, name: str | None = None
) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, query text, None)`` per good row (a transaction keeps the query lines ``fields``) and
    ``(line number, None, "file:line: problem")`` per bad one, streamed: one line in memory at a time. Messages
    call the file ``name`` (default: ``path``).

    Raises:
        DataError: the file is missing, a folder, unreadable or not UTF-8 (naming the line and byte).
    """
    path_name = name or str(path)
    for number, line in numbered_lines(path, "--input", path_name):
        try:
            yield number, query_text(json.loads(line), fields), None
        except json.JSONDecodeError as error:
            yield number, None, f"{path_name}:{number}: not valid JSON ({error.msg} at column {error.colno})"
        except RecursionError:
            yield number, None, f"{path_name}:{number}: JSON nested too deeply (a row is one flat object)"
        except RowError as error:
            yield number, None, f"{path_name}:{number}: {error}"


def read_rows(path: Path, strict: bool, name: str | None = None) -> RowCount:
    """Count the file's good and bad rows, before any model is loaded (a bad file costs no model load).

    Raises:
        DataError: the file is missing, a folder, unreadable or not UTF-8, or a row is bad and ``strict`` is set.
    """
    good = bad = 0
    for _, text, problem in parsed_rows(path, name=name):
        if problem is not None and strict:
            raise DataError(f"{problem} (--strict stops at the first bad row)")
        good, bad = good + (text is not None), bad + (problem is not None)
    return RowCount(good, bad)


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), without reading ahead further."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ranked(model: Any, texts: Sequence[str], top_n: int) -> list[dict[str, Any]]:
    """One model call: each text's ``categories`` and ``scores``."""
    import pandas as pd

    frame = model.predict(pd.DataFrame({"input": list(texts)}), params={"top_n": top_n})
    return [
        {"categories": list(categories), "scores": [float(s) for s in scores]}
        for categories, scores in zip(frame["categories"], frame["scores"], strict=True)
    ]


def output_path(args: argparse.Namespace) -> Path:
    """``--output``; else beside the input file, or standard output (``-``) for a stream or a file under /dev or
    /proc (``/dev/stdin`` redirected from a file), where nothing may be written beside it."""
    if args.output:
        return Path(args.output)
    if is_stream(args.input) or args.input.absolute().parts[1:2] in (("dev",), ("proc",)):
        return STANDARD
    return Path(args.input.with_name(args.input.name.removesuffix(".jsonl") + ".suggestions.jsonl"))


@contextmanager
def opened_output(output: Path) -> Iterator[TextIO]:
    """Where to write: standard output for ``-``; a stream (a FIFO, ``/dev/stdout``) in place, never replaced by a
    file; a file under a temporary name, renamed into place only once complete."""
    if output == STANDARD:
        yield sys.stdout
        sys.stdout.flush()
        return
    if is_stream(output):
        with output.open("w", encoding="utf-8") as sink:
            yield sink
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as sink:
            yield sink
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


def suggest_file(
    model: Any,
    args: argparse.Namespace,
    count: RowCount,
    fields: Sequence[str] = QUERY_FIELDS,
    source: Path | None = None,
) -> None:
    """Stream ``--input`` (or its readable copy ``source``) through the model in batches and write ``--output``;
    report skipped rows. A transaction row becomes the query lines ``fields`` (the model's).

    Memory stays flat whatever the file's size: one batch of rows is read, ranked and written at a time. An output
    file is written under a temporary name and renamed at the end, so a run that fails or is stopped never leaves
    a complete-looking file.
    """
    output = output_path(args)
    started = time.perf_counter()
    with (
        opened_output(output) as sink,
        tqdm(total=count.good, desc="suggest", unit="rows", disable=args.no_progress) as bar,
    ):
        rows = parsed_rows(source or args.input, fields, shown(args.input))
        good = (row for row in _reported(rows) if row[1] is not None)
        for batch in batches(good, args.batch_size):
            results = ranked(model, [text for _, text, _ in batch if text is not None], args.top_n)
            sink.writelines(
                json.dumps({"line": number, **result}, ensure_ascii=False) + "\n"
                for (number, _, _), result in zip(batch, results, strict=True)
            )
            bar.update(len(batch))
    seconds = time.perf_counter() - started
    print(
        f"ranked {count.good} rows in {seconds:.1f} s ({count.good / seconds:.0f} rows/s), "
        f"skipped {count.bad} bad rows; wrote {shown(output, '<stdout>')}",
        file=sys.stderr,
    )


def _reported(rows: Iterable[tuple[int, str | None, str | None]]) -> Iterator[tuple[int, str | None, str | None]]:
    """The rows, with a ``skipped: file:line: problem`` line on stderr for each bad one as it passes."""
    for row in rows:
        if row[2] is not None:
            print(f"skipped: {row[2]}", file=sys.stderr)
        yield row


def one_text(row: dict[str, Any], fields: Sequence[str] = QUERY_FIELDS) -> str:
    """The query text of the single row (a transaction keeps the query lines ``fields``); a problem names the flag
    (``--amount: Field required``)."""
    try:
        return query_text(row, fields)
    except RowError as error:
        field, _, message = str(error).partition(": ")
        flag = f"--{field.replace('_', '-')}" if field in (*FLAG_FIELDS, "trip_name") else field
        raise UserError(f"{flag}: {message}") from None


def suggest_one(model: Any, text: str, args: argparse.Namespace) -> None:
    """Rank one query text and print it: ``rank. category  score`` lines, or one JSON object with ``--json``."""
    [result] = ranked(model, [text], args.top_n)
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
    passive_waits()  # before torch loads (with the model)
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # schema notes on every batch
    try:
        if args.top_n < 1 or args.batch_size < 1:
            raise UserError(f"--top-n {args.top_n} and --batch-size {args.batch_size} must be at least 1.")
        # The input is checked before the model is loaded: a bad row costs no model load.
        row = single_row(args)
        if row is not None:
            one_text(row)
        with ExitStack() as stack:
            source = stack.enter_context(readable_copy(args.input)) if row is None else None
            rows = read_rows(source, args.strict, shown(args.input)) if source is not None else None
            if rows is not None and not rows.good:
                raise DataError(f"{shown(args.input)}: no row to rank ({rows.bad} bad).")
            from experiments.serving.mlflow_model import connect, load, query_fields, tracking_uri

            if not Path(args.model, "MLmodel").is_file():  # a downloaded model folder needs no store
                connect(tracking_uri(args.tracking_uri))
            share_the_cpu()
            model = load(args.model)
            # A transaction is formatted as the model's run formatted its examples (dataset.query_fields).
            fields = query_fields(model)
            if rows is not None:
                suggest_file(model, args, rows, fields, source)
            elif row is not None:
                suggest_one(model, one_text(row, fields), args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
