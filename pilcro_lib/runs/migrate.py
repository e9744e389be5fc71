"""Carry run records over a code change that leaves their results as they were.

A record stores a digest of the code its run executed
(:func:`pilcro_lib.runs.fingerprint.code_digest`), so any edit of that code makes it stale. Some
edits leave every stored result unchanged: a new check that the stored runs passed, a refactoring, a
new way to compute the digest itself. After committing such an edit,
``python -m pilcro_lib.runs.migrate --from BASE --why "..."`` re-stamps every record that was
current at commit ``BASE``: it recomputes the record's digest with the fingerprint code and library
sources of ``BASE`` (taken from git), and where that matches the stored digest it stores the digest
of the current code, adding to the record's provenance a ``migrations`` entry (from and to commit,
the reason, the date). A record that was already stale at ``BASE``, or whose code changed in a way
the reason does not cover, is not touched: it is listed, to be recomputed. Whether an edit leaves
results unchanged is the person's claim, stated in ``--why`` and kept in every record it touched;
check it first by recomputing a few records.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from pilcro_lib.runs.fingerprint import code_digest, run_key
from pilcro_lib.runs.records import (
    SUFFIX,
    default_store,
    read_record,
    record_path,
    write_record_text,
)

_REPO = Path(__file__).resolve().parents[2]
# what decides a record's digest: the library outside the orchestration package, and the digest
# itself
_TRAINING_CODE = ("pilcro_lib", ":(exclude)pilcro_lib/runs", "pilcro_lib/runs/fingerprint.py")


def _git(*args: str) -> bytes:
    out = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, timeout=60, check=False)
    if out.returncode != 0:
        raise ValueError(f"git {' '.join(args)} failed: {out.stderr.decode().strip()}")
    return out.stdout


def _fingerprint_at(commit: str, folder: Path) -> ModuleType:
    """The module ``pilcro_lib.runs.fingerprint`` as it was at ``commit``, reading that commit's
    library sources (extracted into ``folder``)."""
    with tarfile.open(fileobj=io.BytesIO(_git("archive", commit, "pilcro_lib"))) as archive:
        archive.extractall(folder, filter="data")
    spec = importlib.util.spec_from_file_location(
        f"_fingerprint_{commit}", folder / "pilcro_lib/runs/fingerprint.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is being defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def migrate_records(
    base: str, why: str, *, store: str | Path | None = None
) -> tuple[list[Path], list[Path]]:
    """Re-stamp the records of ``store`` (default: :func:`~pilcro_lib.runs.records.default_store`)
    that were current at git commit ``base`` and are stale now; returns ``(migrated, left)``, the
    records re-stamped and the stale ones left alone (stale at ``base`` already)."""
    if not isinstance(why, str) or len(why.strip()) < 10:
        raise ValueError(f"why must say in words why the results are unchanged, got {why!r}")
    commit = _git("rev-parse", "--short=12", "HEAD").decode().strip()
    base = _git("rev-parse", "--short=12", f"{base}^{{commit}}").decode().strip()
    migrated, left = [], []
    with tempfile.TemporaryDirectory() as tmp:
        old = _fingerprint_at(base, Path(tmp))
        for path in sorted(
            Path(store if store is not None else default_store()).glob(f"*/*{SUFFIX}")
        ):
            stored = read_record(path)
            now = code_digest(stored["code_functions"])
            if stored["code"] == now:
                continue
            if old.code_digest(stored["code_functions"]) != stored["code"]:
                left.append(path)
                continue
            entry = {
                "from_commit": base,
                "to_commit": commit,
                "why": why.strip(),
                "utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            }
            stored["provenance"]["migrations"] = [
                *stored["provenance"].get("migrations", []),
                entry,
            ]
            stored["code"] = now
            write_record_text(
                path, json.dumps(stored, sort_keys=True, separators=(",", ":")) + "\n"
            )
            migrated.append(path)
    return migrated, left


def round_inputs(
    store: str | Path | None, names: tuple[str, ...], digits: int, why: str
) -> list[Path]:
    """Re-key the records whose inputs ``names`` are floats that :func:`round` to ``digits``
    significant digits changes (e.g. a grid value 0.03000000000000001 that a machine-independent
    grid now gives as 0.03): the spec holds the rounded value, the record moves to its new key,
    and a ``migrations`` entry keeps the old key and the value the run was trained with. A record
    whose new key is taken already is left where it is. Returns the records moved (new paths)."""
    if not isinstance(why, str) or len(why.strip()) < 10:
        raise ValueError(f"why must say in words why the results are unchanged, got {why!r}")
    moved = []
    for path in sorted(Path(store if store is not None else default_store()).glob(f"*/*{SUFFIX}")):
        stored = read_record(path)
        inputs = stored["spec"]["inputs"]
        changed = {
            n: inputs[n]
            for n in names
            if isinstance(inputs.get(n), float) and float(f"{inputs[n]:.{digits}g}") != inputs[n]
        }
        if not changed:
            continue
        inputs.update({n: float(f"{v:.{digits}g}") for n, v in changed.items()})
        old_key, stored["key"] = stored["key"], run_key(stored["spec"])
        target = record_path(stored["name"], stored["key"], store=path.parents[1])
        if target.exists():
            continue
        entry = {
            "from_key": old_key,
            "trained_with": changed,
            "why": why.strip(),
            "utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        }
        stored["provenance"]["migrations"] = [*stored["provenance"].get("migrations", []), entry]
        write_record_text(target, json.dumps(stored, sort_keys=True, separators=(",", ":")) + "\n")
        path.unlink()
        moved.append(target)
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pilcro_lib.runs.migrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--from", dest="base", required=True, help="the commit at which the records were current"
    )
    parser.add_argument(
        "--why", required=True, help="why the code change leaves the stored results unchanged"
    )
    parser.add_argument(
        "--store", default=None, help="the record store (default: $PILCRO_RECORDS or records/)"
    )
    args = parser.parse_args(argv)
    if _git("status", "--porcelain", "--untracked-files=no", "--", *_TRAINING_CODE):
        parser.error(
            "the training code has uncommitted changes: commit the code change first, so that "
            "the records name the commit whose code they are stamped with"
        )
    try:
        migrated, left = migrate_records(args.base, args.why, store=args.store)
    except ValueError as err:
        parser.error(str(err))
    print(f"{len(migrated)} records re-stamped; {len(left)} stale records left to recompute")
    for path in left:
        print(f"  stale at {args.base} already: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
