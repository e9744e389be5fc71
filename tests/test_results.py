import pytest

from pilcro_lib.results import cached_run, collect_runs, config_hash


def test_config_hash_ignores_key_order_and_sees_values():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    with pytest.raises(TypeError, match="JSON"):
        config_hash({"a": object()})


def test_cached_run_runs_once_and_collects(tmp_path):
    calls = []

    def run(run_dir):
        calls.append(run_dir)
        (run_dir / "artifact.txt").write_text("x")
        return {"accuracy": 0.5 + len(calls) / 10, "curve": [1, 2]}

    first = cached_run({"arm": "plain", "seed": 0}, run, root=tmp_path)
    second = cached_run({"seed": 0, "arm": "plain"}, run, root=tmp_path)
    other = cached_run({"arm": "pilcro", "seed": 0}, run, root=tmp_path)
    assert first == second == {"accuracy": 0.6, "curve": [1, 2]} and other["accuracy"] == 0.7
    assert len(calls) == 2 and (calls[0] / "artifact.txt").exists()
    frame = collect_runs(tmp_path)
    assert sorted(frame["arm"]) == ["pilcro", "plain"] and set(frame["accuracy"]) == {0.6, 0.7}


def test_collect_runs_of_empty_root(tmp_path):
    assert collect_runs(tmp_path).empty
