"""Run identity, run records, crash safety, concurrency and safe loading."""

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import kill_driver
import pytest
import torch

from pilcro_lib.data import ImageDataset, load_dataset
from pilcro_lib.models import reference_net
from pilcro_lib.objective import PObjective
from pilcro_lib.runs import fingerprint, records
from pilcro_lib.runs.checkpoint import (
    MAGIC,
    CorruptFileError,
    load_checkpoint,
    run_dir_lock,
    write_atomic,
)
from pilcro_lib.runs.fingerprint import code_digest, describe, run_key, traced_code
from pilcro_lib.runs.records import (
    StaleRecordError,
    cached_run,
    load_records,
    provenance_note,
    read_record,
)
from pilcro_lib.train import TIME_KEYS, fit

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}


def _strip_times(history):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in history]


# --------------------------------------------------------------------------- what identifies a run


def test_dataset_key_sees_the_exact_images_not_the_name_and_size():
    data = kill_driver.data()
    mirrored = ImageDataset(data.images.flip(-1), data.labels, data.classes, data.name)
    assert len(mirrored) == len(data) and mirrored.name == data.name
    assert run_key(describe(data)) != run_key(describe(mirrored))
    assert run_key(describe(data)) == run_key(describe(kill_driver.data()))


def test_subset_seed_changes_the_key():
    a = load_dataset("fashion_mnist_sample", "train", subset=100, seed=0)
    b = load_dataset("fashion_mnist_sample", "train", subset=100, seed=1)
    assert describe(a)["content"] != describe(b)["content"]


def test_model_key_sees_normalisation_constants_and_init():
    torch.manual_seed(0)
    a = reference_net(width=4, normalization=((0.5,), (0.5,)))
    torch.manual_seed(0)
    b = reference_net(width=4, normalization=((0.2860,), (0.3530,)))
    torch.manual_seed(1)
    c = reference_net(width=4, normalization=((0.5,), (0.5,)))
    keys = {run_key(describe(m)) for m in (a, b, c)}
    assert len(keys) == 3


def test_regulariser_key_holds_every_parameter():
    assert describe(PObjective(1.0, score="loss")) != describe(PObjective(1.0, score="logit"))
    assert describe(PObjective(1.0))["lam"] == 1.0


def test_plain_function_is_described_by_its_code_not_its_address():
    def make():
        def penalty(model, x, y, out):
            return None

        return penalty

    assert describe(make()) == describe(make())
    scale = 1.0

    def scaled(model, x, y, out):
        return scale * out.sum()

    before = describe(scaled)
    scale = 2.0
    assert describe(scaled) != before  # the closure's value is part of the key


def test_undescribable_input_is_refused_naming_it():
    with pytest.raises(
        TypeError, match=r"inputs\['thing'\]: cannot describe an object of type object"
    ):
        cached_run(lambda run_dir, thing: {}, thing=object())


# --------------------------------------------------------------------------- records


def _run(run_dir, *, data, lr, calls=None):
    if calls is not None:  # a file that counts the calls
        with open(calls, "a") as f:
            f.write("call\n")
    history = fit(kill_driver.model(), data, data, epochs=1, lr=lr, run_dir=run_dir, progress=False)
    return {"history": history.records, "acc": history.final["val_acc"]}


def test_cached_run_stores_a_valid_record_and_reuses_it(tmp_path):
    calls = tmp_path / "calls"
    kwargs = dict(
        name="toy", store=tmp_path / "records", runs=tmp_path / "runs", data=kill_driver.data()
    )
    first = cached_run(_run, lr=0.01, calls=calls, **kwargs)
    second = cached_run(_run, lr=0.01, calls=calls, **kwargs)
    assert calls.read_text() == "call\n" and not first.reused and second.reused
    assert first.metrics == second.metrics
    stored = read_record(first.path)
    assert first.path.parent == tmp_path / "records" / "toy" and stored["code"] == code_digest(
        stored["code_functions"]
    )
    assert (
        "train.py:fit" in stored["code_functions"]
        and "landscape.py:cv" not in stored["code_functions"]
    )
    assert not [
        f for f in stored["code_functions"] if f.startswith("runs/")
    ]  # orchestration decides nothing
    assert stored["provenance"]["device"] == "cpu" and stored["provenance"]["wall_time_s"] >= 0
    assert (
        stored["spec"]["inputs"]["lr"] == 0.01
        and stored["spec"]["inputs"]["data"]["name"] == "toy0"
    )
    assert first.path.name == f"{first.key}.json.gz" and first.path.stat().st_size < 20_000
    assert json.loads(gzip.decompress(first.path.read_bytes())) == stored  # zcat reads it
    assert [r.key for r in load_records("toy", store=tmp_path / "records")] == [first.key]
    assert "1 run records (1 read from the store, 0 computed now" in provenance_note([second])


def test_records_of_different_data_seeds_never_mix(tmp_path):
    """Running seed 1 then seed 0 into one store gives seed 0 exactly what a fresh run gives."""
    kwargs = dict(store=tmp_path / "records", runs=tmp_path / "runs", lr=0.01)
    cached_run(_run, data=kill_driver.data(seed=1), **kwargs)
    mixed = cached_run(_run, data=kill_driver.data(seed=0), **kwargs)
    fresh = cached_run(
        _run, data=kill_driver.data(seed=0), store=tmp_path / "fresh", runs=tmp_path / "r2", lr=0.01
    )
    assert not mixed.reused and _strip_times(mixed.metrics["history"]) == _strip_times(
        fresh.metrics["history"]
    )


def test_a_global_the_run_reads_is_part_of_its_key(tmp_path):
    namespace = {"n_epochs": 1}
    exec(
        textwrap.dedent("""
        def run(run_dir):
            return {"epochs": n_epochs}
    """),
        namespace,
    )
    a = cached_run(namespace["run"], store=tmp_path)
    namespace["n_epochs"] = 2
    b = cached_run(namespace["run"], store=tmp_path)
    assert a.key != b.key and b.metrics == {"epochs": 2}


def test_record_of_other_training_code_is_retrained_or_refused(tmp_path, monkeypatch, capsys):
    kwargs = dict(store=tmp_path, runs=tmp_path / "runs", data=kill_driver.data(), lr=0.01)
    cached_run(_run, **kwargs)
    monkeypatch.setattr(records, "code_digest", lambda functions: "0123456789abcdef")
    monkeypatch.setenv("PILCRO_STALE_RECORDS", "refuse")
    with pytest.raises(
        StaleRecordError, match="made by other training code.*PILCRO_STALE_RECORDS=retrain"
    ):
        cached_run(_run, **kwargs)
    monkeypatch.setenv("PILCRO_STALE_RECORDS", "retrain")
    capsys.readouterr()
    again = cached_run(_run, **kwargs)
    assert capsys.readouterr().err.count("recomputing it") == 1  # said once, not once per check
    assert not again.reused and read_record(again.path)["code"] == "0123456789abcdef"
    assert cached_run(_run, **kwargs).reused
    monkeypatch.setenv("PILCRO_STALE_RECORDS", "sometimes")
    with pytest.raises(ValueError, match="PILCRO_STALE_RECORDS='sometimes' is not allowed"):
        cached_run(_run, **kwargs)


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"schema": "pilcro-run-record/1", "key"', "not valid JSON"),
        (None, "not gzip-compressed text"),
        ("[1, 2]", "not a JSON object"),
        ('{"schema": "pilcro-run-record/1"}', "field 'key' is missing"),
    ],
)
def test_corrupt_record_names_the_file(tmp_path, content, match):
    def one(run_dir):
        return {"x": 1}

    record = cached_run(one, store=tmp_path, runs=tmp_path / "runs")
    if content is None:  # plain JSON, as an editor would save it
        record.path.write_text(records.read_record_text(record.path))
    else:
        records.write_record_text(record.path, content)
    with pytest.raises(CorruptFileError, match=f"run record {record.path}.*{match}.*delete it"):
        cached_run(one, store=tmp_path, runs=tmp_path / "runs")


def test_metrics_must_be_plain_json(tmp_path):
    with pytest.raises(TypeError, match="metrics must be plain JSON"):
        cached_run(lambda run_dir: {"x": torch.zeros(2)}, store=tmp_path, runs=tmp_path / "runs")


def test_traced_code_skips_module_and_class_bodies_and_orchestration(tmp_path):
    """A module first imported inside a run adds the functions that run, not every class it
    defines."""
    source = (
        "class Layer:\n    def forward(self):\n        return [i for i in range(2)]\n\n\n"
        "class Unused:\n    pass\n"
    )
    code = compile(source, str(fingerprint._PACKAGE / "fresh_module.py"), "exec")
    with traced_code() as log:
        namespace = {"__name__": "fresh_module"}
        exec(code, namespace)
        namespace["Layer"]().forward()
        write_atomic(tmp_path / "x.txt", b"x")
    assert log.functions == {
        "fresh_module.py:Layer.forward",
        "fresh_module.py:Layer.forward.<locals>.<listcomp>",
    }


def test_code_digest_follows_the_functions_that_ran(monkeypatch):
    with traced_code() as log:
        landscape_cv = __import__("pilcro_lib.landscape", fromlist=["cv"]).cv(
            torch.rand(4, 4) + 0.5
        )
    used = log.functions
    assert "landscape.py:cv" in used and float(landscape_cv) >= 0
    before = code_digest(used)
    source = (fingerprint._PACKAGE / "landscape.py").read_text()
    edits = {
        "a docstring": source.replace('"""', '"""Edited. ', 1),
        "another function": source.replace("def curvature(", "def curvature_renamed("),
        "the function": source.replace("def cv(lam", "def cv(lam, unused=None"),
        "a new constant": source + "\nNEW_CONSTANT = 1\n",
        "a constant it reads, 1": _reads_constant(source, 1),
        "a constant it reads, 2": _reads_constant(source, 2),
        "a missing function": source.replace("def cv(lam", "def cv_gone(lam"),
    }
    digests = {}
    for what, text in edits.items():
        fingerprint._module_tree.cache_clear()
        monkeypatch.setattr(
            fingerprint, "_PACKAGE", _FakePackage(fingerprint._PACKAGE, "landscape.py", text)
        )
        digests[what] = code_digest(used)
    fingerprint._module_tree.cache_clear()
    assert (
        digests["a docstring"] == digests["another function"] == digests["a new constant"] == before
    )
    changed = [
        digests[k]
        for k in (
            "the function",
            "a constant it reads, 1",
            "a constant it reads, 2",
            "a missing function",
        )
    ]
    assert len({before, *changed}) == 5


def _reads_constant(source, value):
    """``source`` with a module constant ``EPS = value`` that ``cv`` reads."""
    head = "def cv(lam: Tensor) -> Tensor:\n"
    return source.replace(head, f"EPS = {value}\n\n\n{head}    EPS\n", 1)


class _FakePackage:
    """A package folder in which one module's source is replaced."""

    def __init__(self, real, name, text):
        self.real, self.name, self.text = real, name, text

    def __truediv__(self, name):
        return _FakeFile(self.text) if name == self.name else self.real / name


class _FakeFile:
    def __init__(self, text):
        self.text = text

    def read_text(self):
        return self.text


# --------------------------------------------------------------------------- fit's run_dir guard


def _fit(run_dir, model=None, data=None, **kwargs):
    settings = {**kill_driver.FIT, "epochs": 1, **kwargs}
    model = model if model is not None else kill_driver.model()
    data = data if data is not None else kill_driver.data()
    return fit(model, data, kill_driver.data(32, seed=1), run_dir=run_dir, **settings)


@pytest.mark.parametrize(
    "change, field",
    [
        (
            dict(
                data=ImageDataset(
                    kill_driver.data().images.flip(-1),
                    kill_driver.data().labels,
                    ["bottom", "top"],
                    "toy0",
                )
            ),
            "train_set",
        ),
        (dict(regularizer=PObjective(1.0, score="logit")), "regularizer"),
        (dict(batch_size=8), "batch_size"),
    ],
)
def test_fit_refuses_a_run_dir_of_another_run(tmp_path, change, field):
    _fit(tmp_path, regularizer=PObjective(1.0) if field == "regularizer" else None)
    with pytest.raises(ValueError, match=rf"holds a different run \(it differs in: {field}\)"):
        _fit(tmp_path, **change)


def test_fit_refuses_other_normalisation(tmp_path):
    def net(mean):
        torch.manual_seed(0)
        return reference_net(width=4, input_size=8, normalization=((mean,), (0.5,)))

    _fit(tmp_path, model=net(0.5))
    with pytest.raises(ValueError, match=r"differs in: model"):
        _fit(tmp_path, model=net(0.3))


def test_plain_function_regulariser_resumes(tmp_path):
    def penalty(model, x, y, out):
        return None

    first = _fit(tmp_path, regularizer=penalty)
    again = _fit(tmp_path, regularizer=penalty)
    assert first.records == again.records


def test_truncated_fit_config_names_the_file(tmp_path):
    _fit(tmp_path)
    (tmp_path / "fit_config.json").write_text('{"epochs": ')
    with pytest.raises(CorruptFileError, match=r"fit_config.json is not valid JSON.*delete it"):
        _fit(tmp_path)


# --------------------------------------------------------------------------- safe loading


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    import hashlib
    import io

    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    torch.save({"epoch": 1, "evil": _Payload()}, buf)
    payload = buf.getvalue()
    (tmp_path / "checkpoint.pt").write_bytes(
        MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    )
    with pytest.raises(CorruptFileError, match="holds more than plain data"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "PWNED").exists()


# --------------------------------------------------------------------------- crash safety


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    model = kill_driver.model()
    history = fit(
        model,
        kill_driver.data(),
        kill_driver.data(32, seed=1),
        run_dir=tmp_path_factory.mktemp("straight"),
        **kill_driver.FIT,
    )
    return _strip_times(history.records), model.state_dict()


def _resume_matches(run_dir, straight):
    model = kill_driver.model()
    history = fit(
        model, kill_driver.data(), kill_driver.data(32, seed=1), run_dir=run_dir, **kill_driver.FIT
    )
    assert _strip_times(history.records) == straight[0]
    for name, value in straight[1].items():
        assert torch.equal(model.state_dict()[name], value), name
    assert not list(Path(run_dir).glob(".*.tmp"))


KILL_POINTS = [
    (write, stage)
    for write in (1, 2, 3, 4, 5)
    for stage in ("torn", "before_replace", "after_replace", "after_write")
]


@pytest.mark.parametrize("write, stage", KILL_POINTS)
def test_kill_at_every_step_of_a_write_resumes_bit_identically(tmp_path, straight, write, stage):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "kill_driver.py"), str(tmp_path), str(write), stage],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr
    _resume_matches(tmp_path, straight)


def test_sigkill_at_random_instants_resumes_bit_identically(tmp_path, straight):
    rng = random.Random(0)
    for attempt in range(4):
        run_dir = tmp_path / str(attempt)
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "kill_driver.py"), str(run_dir)],
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "training"
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _resume_matches(run_dir, straight)


# --------------------------------------------------------------------------- concurrency


def test_two_processes_asking_for_one_run_compute_it_once(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pilcro_lib.runs.records import cached_run

        def slow(run_dir, *, x):
            with open({str(tmp_path / "calls")!r}, "a") as f:
                f.write("call\\n")
            time.sleep(1.5)
            return {{"x": x}}

        record = cached_run(
            slow, x=3, store={str(tmp_path / "store")!r}, runs={str(tmp_path / "runs")!r}
        )
        print(record.reused, record.metrics["x"])
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outputs == ["False 3", "True 3"]
    assert (tmp_path / "calls").read_text() == "call\n"


def test_lock_waits_for_the_holder(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from pilcro_lib.runs.checkpoint import run_dir_lock
        with run_dir_lock(Path({str(tmp_path)!r})):
            print("locked", flush=True)
            time.sleep(1.0)
    """)
    holder = subprocess.Popen(
        [sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    messages = []
    start = time.perf_counter()
    with run_dir_lock(tmp_path, log=messages.append):
        waited = time.perf_counter() - start
    holder.wait(timeout=30)
    assert waited > 0.3 and "another process is computing this run" in messages[0]


def test_every_committed_record_is_a_valid_record_named_by_its_key():
    """The book's store holds records and nothing else: ``<chapter>/<key>.json.gz``, each
    readable."""
    store = REPO / "records"  # not $PILCRO_RECORDS, which the test command points elsewhere
    files = sorted(p for p in store.rglob("*") if p.is_file())
    assert files, f"no records under {store}"
    for path in files:
        assert path.name.endswith(records.SUFFIX), (
            f"{path} is not a record file (<key>{records.SUFFIX})"
        )
        stored = read_record(path)
        assert (
            path.name == f"{stored['key']}{records.SUFFIX}" and path.parent.name == stored["name"]
        ), path


def test_every_committed_record_is_current():
    """No committed record was made by other training code than the code here: a change to
    that code is either shown not to change results (``python -m pilcro_lib.runs.migrate``) or
    its records are recomputed, before it lands."""
    stale = []
    for path in sorted((REPO / "records").glob(f"*/*{records.SUFFIX}")):
        stored = read_record(path)
        if stored["code"] != code_digest(stored["code_functions"]):
            stale.append(
                f"{path.parent.name}/{path.name} (commit {stored['provenance']['commit']})"
            )
    assert not stale, f"{len(stale)} stale records, e.g. {stale[:3]}"


# --------------------------------------------------------------------- what a record says of itself


def test_a_record_rewritten_from_a_finished_checkpoint_still_names_the_training_code(tmp_path):
    """Deleting a record (as the corrupt-file message advises) and asking again rewrites it from the
    finished checkpoint without training an epoch: the functions of the epochs are still named."""
    kwargs = dict(
        name="toy", store=tmp_path / "records", runs=tmp_path / "runs", data=kill_driver.data()
    )
    first = cached_run(_run, lr=0.01, **kwargs)
    first.path.unlink()
    again = cached_run(_run, lr=0.01, **kwargs)
    stored = read_record(again.path)
    assert {"train.py:_train_epoch", "train.py:lr_factor"} <= set(stored["code_functions"])
    assert stored["code_functions"] == read_record_text_functions(first)
    segments = stored["provenance"]["segments"]
    assert [s["epochs"] for s in segments] == [[0, 1], [1, 1]]
    assert stored["provenance"]["started_commit"] == segments[0]["commit"]


def read_record_text_functions(record):
    return sorted(json.loads(records.read_record_text(record.path))["code_functions"])


@pytest.mark.parametrize("forced, precision", [("0", "float32"), ("1", "bf16")])
def test_a_record_states_its_precision_and_cpu(tmp_path, monkeypatch, forced, precision):
    monkeypatch.setenv("PILCRO_CPU_BF16", forced)

    def run(run_dir, data):
        history = fit(
            kill_driver.model(), data, data, epochs=1, recipe="fast", batch_size=16, progress=False
        )
        return {"acc": history.final["val_acc"]}

    record = cached_run(
        run, name="toy", store=tmp_path, runs=tmp_path / "runs", data=kill_driver.data()
    )
    provenance = read_record(record.path)["provenance"]
    assert provenance["precision"] == precision and provenance["cpu"] == records.cpu_name() != ""
    assert f"({records.cpu_name()}, {precision})" in provenance_note([record])


def test_an_unwritable_store_is_refused_before_training(tmp_path, monkeypatch):
    calls = []

    def refuse(self, data):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(
        OSError, match=r"record store .*toy is not writable \(Read-only file system\)"
    ):
        cached_run(
            lambda run_dir: calls.append(1) or {},
            name="toy",
            store=tmp_path,
            runs=tmp_path / "runs",
        )
    assert calls == []


def _stored(tmp_path):
    record = cached_run(
        lambda run_dir, x: {"x": x}, name="toy", store=tmp_path, runs=tmp_path / "runs", x=1
    )
    return record.path, json.loads(records.read_record_text(record.path))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda r: r["spec"]["inputs"].update(x=2), "is not the hash of its spec"),
        (lambda r: r.update(name="other"), "is not the folder it is stored in"),
        (
            lambda r: r["provenance"].update(wall_time_s="fast"),
            "provenance entries of the wrong type: wall_time_s",
        ),
        (lambda r: r["provenance"].update(dirty=0), "provenance entries of the wrong type: dirty"),
        (lambda r: r.update(code_functions=[1]), "code_functions must be a list of names"),
    ],
)
def test_a_record_that_contradicts_itself_is_refused(tmp_path, damage, match):
    path, stored = _stored(tmp_path)
    damage(stored)
    records.write_record_text(path, json.dumps(stored))
    with pytest.raises(CorruptFileError, match=match):
        read_record(path)


def test_a_deeply_nested_record_is_refused_as_corrupt(tmp_path):
    path = tmp_path / "toy" / "0123456789abcdef.json.gz"
    records.write_record_text(path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorruptFileError, match="nested too deeply"):
        read_record(path)


# --------------------------------------------------------------------------- same key, same result


def test_keys_tell_apart_what_gives_other_results():
    assert run_key(describe({1: "x"})) != run_key(describe({"1": "x"}))
    assert describe({"a": 1}) == {"a": 1}  # string keys described as before
    torch.manual_seed(0)
    net, frozen = reference_net(width=4), reference_net(width=4)
    frozen.load_state_dict(net.state_dict())
    next(frozen.parameters()).requires_grad_(False)
    assert run_key(describe(net)) != run_key(describe(frozen))
    fresh, used = PObjective(1.0), PObjective(1.0)
    used.step = 7
    assert describe(fresh) == describe(PObjective(1.0)) and describe(fresh) != describe(used)


def _sequence_kinds(values, run_dir):
    return {"kinds": [type(values).__name__, type(values["inner"]).__name__]}


def test_a_tuple_and_a_list_give_one_key_and_one_result(tmp_path):
    """(1, 2) and [1, 2] are described alike, so the run must see the same thing for both."""
    as_tuple = cached_run(
        _sequence_kinds, values={"inner": (1, 2)}, store=tmp_path / "a", runs=tmp_path / "r"
    )
    as_list = cached_run(
        _sequence_kinds, values={"inner": [1, 2]}, store=tmp_path / "b", runs=tmp_path / "r"
    )
    assert as_tuple.key == as_list.key
    assert as_tuple.metrics == as_list.metrics == {"kinds": ["dict", "list"]}


def test_library_constants_read_through_a_module_alias_are_in_the_key(monkeypatch):
    from pilcro_lib import data as D

    def run(run_dir):
        return {"mean": D.NORMALIZATION["mnist"][0][0]}

    before = describe(run)
    assert "D.NORMALIZATION" in before["reads"]
    monkeypatch.setitem(D.NORMALIZATION, "mnist", ((0.1,), (0.3,)))
    assert describe(run) != before


def _digest_with(monkeypatch, functions, **sources):
    """code_digest of ``functions`` with some library modules' sources replaced."""
    fingerprint._module_tree.cache_clear()
    monkeypatch.setattr(fingerprint, "_PACKAGE", _FakeFiles(fingerprint._PACKAGE, sources))
    try:
        return code_digest(functions)
    finally:
        fingerprint._module_tree.cache_clear()


class _FakeFiles:
    def __init__(self, real, texts):
        self.real, self.texts = real, texts

    def __truediv__(self, name):
        return _FakeFile(self.texts[name]) if name in self.texts else self.real / name


def test_a_method_is_fingerprinted_with_its_class_statements_not_its_sibling_methods(monkeypatch):
    source = (
        "class Layer:\n    scale = 2\n\n    def forward(self):\n        return self.scale\n\n"
        "    def other(self):\n        return 1\n"
    )
    digest = {what: _digest_with(monkeypatch, ["fake.py:Layer.forward"], **{"fake.py": text})
              for what, text in {
                  "before": source,
                  "a sibling method": source.replace("return 1", "return 3"),
                  "a class attribute": source.replace("scale = 2", "scale = 3"),
                  "the method": source.replace("return self.scale", "return -self.scale"),
              }.items()}  # fmt: skip
    assert digest["a sibling method"] == digest["before"]
    assert len({digest["before"], digest["a class attribute"], digest["the method"]}) == 3


@pytest.mark.parametrize(
    "use",
    [
        "from pilcro_lib import data as D\n\n\ndef f():\n    return D.SCALE\n",
        "import pilcro_lib.data as D\n\n\ndef f():\n    return D.SCALE\n",
        "from pilcro_lib.data import SCALE\n\n\ndef f():\n    return SCALE\n",
        "def f():\n    from pilcro_lib import data\n\n    return data.SCALE\n",
    ],
)
def test_library_constants_imported_from_another_module_are_fingerprinted(monkeypatch, use):
    one = _digest_with(monkeypatch, ["fake.py:f"], **{"fake.py": use, "data.py": "SCALE = 1\n"})
    two = _digest_with(monkeypatch, ["fake.py:f"], **{"fake.py": use, "data.py": "SCALE = 2\n"})
    other = _digest_with(
        monkeypatch, ["fake.py:f"], **{"fake.py": use, "data.py": "SCALE = 1\nOTHER = 5\n"}
    )
    assert one != two and one == other
