"""Carrying records over a code change that leaves their results unchanged
(pilcro_lib.runs.migrate)."""

import json
import subprocess
import types
from pathlib import Path

import pytest

from pilcro_lib.runs import migrate, records
from pilcro_lib.runs.fingerprint import code_digest
from pilcro_lib.runs.records import cached_run, read_record

REPO = Path(__file__).resolve().parents[1]
WHY = "a new argument check that every stored run passed"


def _record(store, x):
    return cached_run(
        lambda run_dir, x: {"x": x}, name="toy", store=store, runs=store / "runs", x=x
    ).path


def test_records_current_at_the_base_commit_are_re_stamped_and_say_so(tmp_path, monkeypatch):
    current, stale = _record(tmp_path, 1), _record(tmp_path, 2)
    stamped = read_record(current)["code"]
    text = json.loads(records.read_record_text(stale))
    text["code"] = "0000000000000000"  # made by code older than the base commit
    records.write_record_text(stale, json.dumps(text))
    monkeypatch.setattr(
        migrate,
        "_fingerprint_at",
        lambda commit, folder: types.SimpleNamespace(code_digest=lambda functions: stamped),
    )  # the base commit's code: what the records were made with
    monkeypatch.setattr(
        migrate, "code_digest", lambda functions: "feedfacefeedface"
    )  # the code since
    migrated, left = migrate.migrate_records("HEAD", WHY, store=tmp_path)
    assert (migrated, left) == ([current], [stale])
    after = read_record(current)
    assert after["code"] == "feedfacefeedface" and read_record(stale)["code"] == "0000000000000000"
    (entry,) = after["provenance"]["migrations"]
    assert entry["why"] == WHY and entry["from_commit"] == entry["to_commit"]
    assert after["metrics"] == {"x": 1} and after["key"] == current.name.split(".")[0]


def test_a_migration_needs_a_reason():
    with pytest.raises(ValueError, match="why must say in words"):
        migrate.migrate_records("HEAD", "ok")


def test_the_base_commit_code_is_read_from_git(tmp_path):
    clean = (
        subprocess.run(
            [
                "git",
                "diff",
                "--quiet",
                "HEAD",
                "--",
                "pilcro_lib/landscape.py",
                "pilcro_lib/runs/fingerprint.py",
            ],
            cwd=REPO,
            check=False,
        ).returncode
        == 0
    )
    if not clean:
        pytest.skip("landscape.py or fingerprint.py differ from HEAD in this checkout")
    old = migrate._fingerprint_at("HEAD", tmp_path)
    assert old._PACKAGE == (tmp_path / "pilcro_lib").resolve()
    assert old.code_digest(["landscape.py:cv"]) == code_digest(["landscape.py:cv"])


def test_an_unknown_base_commit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="git rev-parse"):
        migrate.migrate_records("no-such-commit", WHY, store=tmp_path)


def test_inputs_rounded_to_a_machine_independent_value_move_the_record_to_its_new_key(tmp_path):
    path = cached_run(
        lambda run_dir, lam: {"lam": lam},
        name="toy",
        store=tmp_path,
        runs=tmp_path / "r",
        lam=0.03000000000000001,
    ).path
    (moved,) = migrate.round_inputs(tmp_path, ("lam",), 12, WHY)
    assert not path.exists() and moved.exists()
    again = cached_run(
        lambda run_dir, lam: {"lam": lam}, name="toy", store=tmp_path, runs=tmp_path / "r", lam=0.03
    )
    assert again.reused and again.path == moved
    (entry,) = read_record(moved)["provenance"]["migrations"]
    assert (
        entry["trained_with"] == {"lam": 0.03000000000000001}
        and entry["from_key"] == path.name[:16]
    )
