import dataclasses
import json

import pytest
import torch
from torch import nn

from pilcro_lib.data import ImageDataset
from pilcro_lib.runs.checkpoint import CorruptFileError, load_checkpoint
from pilcro_lib.train import (
    TIME_KEYS,
    Recipe,
    evaluate,
    fit,
    get_recipe,
    lr_factor,
    predict,
    random_flip,
)


class Interrupt(Exception):
    pass


class Killer:
    """A regulariser that adds nothing but can stop training at the start of an epoch."""

    def __init__(self, kill_at=None):
        self.kill_at = kill_at

    def __call__(self, model, inputs, targets, outputs):
        return None

    def on_epoch_start(self, epoch):
        if epoch == self.kill_at:
            raise Interrupt

    def describe(self):
        return {}  # a fault injector, not part of what the run computes


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 8, 8, generator=g)
    labels = (images[:, 0, :4].mean((1, 2)) > images[:, 0, 4:].mean((1, 2))).long()
    return ImageDataset(images, labels, ["bottom", "top"], f"toy{seed}")


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(4 * 64, 2),
    )  # fmt: skip


def _strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def test_resume_after_interrupt_is_bit_identical(tmp_path):
    kwargs = dict(
        epochs=3, batch_size=16, optimizer="sgd", lr=0.05, schedule="cosine", seed=5, progress=False
    )
    train, val = _data(), _data(32, seed=1)
    straight = _model()
    h1 = fit(straight, train, val, run_dir=tmp_path / "a", regularizer=Killer(), **kwargs)

    resumed = _model()
    with pytest.raises(Interrupt):
        fit(resumed, train, val, run_dir=tmp_path / "b", regularizer=Killer(kill_at=1), **kwargs)
    assert load_checkpoint(tmp_path / "b")["epoch"] == 1
    resumed = _model()  # a fresh process rebuilds the same model; its RNG state is elsewhere
    torch.manual_seed(123)
    h2 = fit(resumed, train, val, run_dir=tmp_path / "b", regularizer=Killer(), **kwargs)

    assert _strip_times(h1.records) == _strip_times(h2.records)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert json.loads((tmp_path / "b" / "history.json").read_text())[-1]["epoch"] == 3


def test_finished_run_is_loaded_not_retrained(tmp_path):
    train, val = _data(), _data(32, seed=1)
    h1 = fit(_model(), train, val, epochs=1, run_dir=tmp_path, progress=False)
    again = _model()
    h2 = fit(again, train, val, epochs=1, run_dir=tmp_path, progress=False)
    assert h1.records == h2.records


def test_run_dir_with_other_config_is_refused(tmp_path):
    train, val = _data(), _data(32, seed=1)
    fit(_model(), train, val, epochs=1, lr=1e-3, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"run_dir=.*different run \(it differs in: lr\)"):
        fit(_model(), train, val, epochs=1, lr=1e-2, run_dir=tmp_path, progress=False)


def test_corrupt_checkpoint_is_detected(tmp_path):
    train, val = _data(), _data(32, seed=1)
    fit(_model(), train, val, epochs=1, run_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(payload))
    with pytest.raises(CorruptFileError, match="checkpoint .*checkpoint.pt is corrupt"):
        load_checkpoint(tmp_path)
    with pytest.raises(CorruptFileError, match="corrupt.*delete it"):
        fit(_model(), train, val, epochs=1, run_dir=tmp_path, progress=False)


def test_training_learns_and_records_history():
    train, val = _data(256), _data(128, seed=1)
    model = _model()
    history = fit(model, train, val, epochs=4, batch_size=32, lr=1e-2, progress=False)
    frame = history.to_frame()
    assert list(frame["epoch"]) == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"} <= set(
        frame.columns
    )
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]
    assert history.final["val_acc"] > 0.75


def test_regularizer_is_added_to_the_loss_and_logged():
    class Weights:
        def __init__(self):
            self.calls = 0

        def __call__(self, model, inputs, targets, outputs):
            self.calls += 1
            return 1e-3 * sum(p.pow(2).sum() for p in model.parameters())

        def epoch_log(self):
            return {"reg_calls": self.calls}

    reg = Weights()
    history = fit(
        _model(),
        _data(),
        _data(32, seed=1),
        epochs=1,
        batch_size=32,
        regularizer=reg,
        progress=False,
    )
    assert reg.calls == 3 and history.final["reg_calls"] == 3 and history.final["reg_loss"] > 0


def test_evaluate_closed_form_and_noise():
    data = _data(100)

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 0.0]))

        def forward(self, x):
            return (
                self.bias.expand(len(x), 2)
                + 0 * x.sum((1, 2, 3), keepdim=True).squeeze(-1).squeeze(-1)[:, :1]
            )

    result = evaluate(Constant(), data)
    assert result["accuracy"] == pytest.approx((data.labels == 0).float().mean().item())
    assert result["loss"] == pytest.approx(torch.log(torch.tensor(2.0)).item())
    model = _model().eval()
    assert evaluate(model, data, noise=0.0) == evaluate(model, data)
    assert evaluate(model, data, noise=0.5, seed=1) == evaluate(model, data, noise=0.5, seed=1)
    assert evaluate(model, data, noise=0.5, seed=1) != evaluate(model, data)
    preds, labels = predict(model, data)
    assert (preds == labels).float().mean().item() == pytest.approx(
        evaluate(model, data)["accuracy"]
    )
    model.train()
    evaluate(model, data)
    assert model.training


def test_lr_schedules():
    assert lr_factor("constant", 3, 10) == 1.0
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert [lr_factor("step", e, 8) for e in range(8)] == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs must be an integer >= 1"),
        (dict(epochs=1, optimizer="rmsprop"), "optimizer='rmsprop'.*'adam'"),
        (dict(epochs=1, schedule="exponential"), "schedule='exponential'"),
        (dict(epochs=1, lr=-1.0), "lr must be a finite number > 0"),
        (dict(epochs=1, batch_size=0), "batch_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit(_model(), _data(), _data(32), progress=False, **kwargs)


def _fast_kwargs(**overrides):
    """The fast recipe on the toy data, bf16 forced so the test means the same on every CPU."""
    recipe = get_recipe("fast", batch_size=16, lr=0.05, **overrides)
    return dict(
        epochs=3,
        recipe=dataclasses.replace(recipe, flip=True, autocast="all"),
        seed=5,
        progress=False,
    )


def test_fast_recipe_resume_after_interrupt_is_bit_identical(tmp_path):
    train, val = _data(), _data(32, seed=1)
    straight = _model()
    h1 = fit(straight, train, val, run_dir=tmp_path / "a", regularizer=Killer(), **_fast_kwargs())
    with pytest.raises(Interrupt):
        fit(
            _model(),
            train,
            val,
            run_dir=tmp_path / "b",
            regularizer=Killer(kill_at=2),
            **_fast_kwargs(),
        )
    resumed = _model()  # a fresh process rebuilds the same model; its RNG state is elsewhere
    torch.manual_seed(123)
    h2 = fit(resumed, train, val, run_dir=tmp_path / "b", regularizer=Killer(), **_fast_kwargs())
    assert _strip_times(h1.records) == _strip_times(h2.records)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert h1.records[-1]["lr"] == pytest.approx(
        0.05 / (3 * 6 - round(0.2 * 3 * 6))
    )  # linear decay, last of 18 steps


def test_fast_recipe_learns_and_differs_from_classic():
    train, val = _data(256), _data(128, seed=1)
    history = fit(
        _model(), train, val, epochs=4, recipe="fast", batch_size=32, lr=0.05, progress=False
    )
    assert history.final["val_acc"] > 0.75
    classic = fit(_model(), train, val, epochs=4, batch_size=32, progress=False)
    assert classic.final["train_loss"] != history.final["train_loss"]


def test_lr_warmup_then_decay_per_step():
    rates = [lr_factor("linear", s, 10, warmup=2) for s in range(10)]
    assert rates == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert lr_factor("cosine", 6, 10, warmup=2) == pytest.approx(0.5)
    assert lr_factor("constant", 0, 10, warmup=4) == 0.25


def test_random_flip_mirrors_about_half_reproducibly():
    images = torch.rand(400, 1, 5, 5)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = (flipped == images.flip(3)).flatten(1).all(1)
    kept = (flipped == images).flatten(1).all(1)
    assert (mirrored ^ kept).all() and 150 < mirrored.sum() < 250
    assert torch.equal(flipped, random_flip(images, torch.Generator().manual_seed(0)))


def test_non_finite_loss_stops_with_epoch_and_step():
    class NanAt:
        def __init__(self, call):
            self.call, self.calls = call, 0

        def __call__(self, model, inputs, targets, outputs):
            self.calls += 1
            return torch.tensor(float("nan")) if self.calls == self.call else None

    model = _model()
    with pytest.raises(FloatingPointError, match=r"training loss is nan at epoch 2, step 3 of 6"):
        fit(
            model,
            _data(),
            _data(32),
            epochs=3,
            batch_size=16,
            regularizer=NanAt(6 + 3),
            progress=False,
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("lr", [True, float("inf"), float("nan"), 0.0, "0.1"])
def test_bad_learning_rates_are_refused(lr):
    with pytest.raises((ValueError, TypeError), match="lr must be a finite number > 0"):
        fit(_model(), _data(), _data(32), epochs=1, lr=lr, progress=False)


@pytest.mark.parametrize(
    "recipe, match",
    [
        ("quick", "recipe='quick'.*'fast'"),
        (dict(lr=0.1), "recipe must be a Recipe or one of 'classic', 'fast'"),
        (Recipe, "recipe must be a Recipe"),
    ],
)
def test_bad_recipes_are_refused(recipe, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit(_model(), _data(), _data(32), epochs=1, recipe=recipe, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(warmup=1.5), r"warmup must be a finite number in \[0, 1\]"),
        (dict(label_smoothing=-0.1), "label_smoothing"),
        (dict(flip=1), "flip must be True or False"),
        (dict(autocast="cpu"), "autocast='cpu'.*'native'"),
        (dict(weight_decay=float("nan")), "weight_decay"),
    ],
)
def test_bad_recipe_settings_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Recipe(**kwargs)


# --- precision, data checks, non-finite results, checkpoints tied to their run ----------------


@pytest.mark.parametrize("forced, expected", [("1", True), ("0", False)])
def test_cpu_bf16_can_be_forced_on_and_off(monkeypatch, forced, expected):
    from pilcro_lib import train

    monkeypatch.setenv(train.BF16_ENV, forced)
    assert train.cpu_has_bf16() is expected
    assert train.uses_bf16(get_recipe("fast"), torch.device("cpu")) is expected
    assert train.uses_bf16(get_recipe("classic"), torch.device("cpu")) is False


def test_a_bad_cpu_bf16_override_is_refused(monkeypatch):
    from pilcro_lib import train

    monkeypatch.setenv(train.BF16_ENV, "yes")
    with pytest.raises(ValueError, match="PILCRO_CPU_BF16"):
        train.cpu_has_bf16()


@pytest.mark.parametrize("forced", ["0", "1"])
def test_both_arithmetic_paths_train_and_resume_bit_identically(tmp_path, monkeypatch, forced):
    from pilcro_lib import train

    monkeypatch.setenv(train.BF16_ENV, forced)
    kwargs = dict(epochs=2, recipe="fast", batch_size=16, seed=3, progress=False)
    straight = fit(_model(), _data(), _data(32, seed=1), regularizer=Killer(), **kwargs)
    with pytest.raises(Interrupt):
        fit(_model(), _data(), _data(32, seed=1), run_dir=tmp_path, regularizer=Killer(1), **kwargs)
    resumed = fit(
        _model(), _data(), _data(32, seed=1), run_dir=tmp_path, regularizer=Killer(), **kwargs
    )
    assert _strip_times(resumed.records) == _strip_times(straight.records)


def test_images_of_another_channel_count_are_refused():
    rgb = ImageDataset(torch.rand(8, 3, 8, 8), torch.arange(8) % 2, ["a", "b"], "rgb")
    with pytest.raises(ValueError, match="train_set holds images of 3 channel.*in_channels=3"):
        fit(_model(), rgb, _data(), epochs=1, progress=False)


def test_labels_the_model_has_no_output_for_are_refused():
    bad = ImageDataset(torch.rand(8, 1, 8, 8), torch.arange(8) % 3, ["a", "b", "c"], "three")
    with pytest.raises(
        ValueError, match=r"train_set holds labels from 0 to 2, but the model has 2 outputs"
    ):
        fit(_model(), bad, _data(), epochs=1, progress=False)


def test_a_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="run_dir=.* is a file"):
        fit(_model(), _data(), _data(), epochs=1, run_dir=tmp_path / "file", progress=False)


def test_the_largest_seed_trains():
    history = fit(_model(), _data(), _data(), epochs=1, seed=2**64 - 1, progress=False)
    assert len(history) == 1


def test_a_last_step_that_diverges_stops_training():
    """One step, from a finite loss, to weights whose validation loss is not finite."""
    with pytest.raises(
        FloatingPointError, match="after epoch 1: the model's loss on data is (nan|inf)"
    ):
        fit(
            _model(),
            _data(),
            _data(),
            epochs=1,
            batch_size=96,
            optimizer="sgd",
            lr=1e30,
            progress=False,
        )


def test_non_finite_images_are_refused_by_evaluate():
    bad = _data()
    bad.images[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="data: images 0 to 95 are not all finite"):
        evaluate(_model(), bad)
    with pytest.raises(ValueError, match="after adding noise=1e.308"):
        evaluate(_model(), _data(), noise=1e308)


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path):
    fit(_model(), _data(), _data(), epochs=1, lr=0.01, run_dir=tmp_path, progress=False)
    (tmp_path / "fit_config.json").unlink()  # deleted as a damaged description, the checkpoint kept
    with pytest.raises(ValueError, match="holds a checkpoint of a different run"):
        fit(_model(), _data(), _data(), epochs=1, lr=0.02, run_dir=tmp_path, progress=False)


def test_a_tensor_dataset_run_resumes_bit_identically(tmp_path):
    from torch.utils.data import TensorDataset

    data = _data()
    tensors = TensorDataset(data.images, data.labels)
    kwargs = dict(epochs=2, batch_size=16, seed=1, progress=False)
    straight = fit(_model(), tensors, tensors, regularizer=Killer(), **kwargs)
    with pytest.raises(Interrupt):
        fit(_model(), tensors, tensors, run_dir=tmp_path, regularizer=Killer(1), **kwargs)
    resumed = fit(_model(), tensors, tensors, run_dir=tmp_path, regularizer=Killer(), **kwargs)
    assert _strip_times(resumed.records) == _strip_times(straight.records)


def test_a_dataset_that_cannot_be_described_is_refused_with_what_to_use(tmp_path):
    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(1, 8, 8), 0

    with pytest.raises(TypeError, match="TensorDataset.*describe\\(\\)"):
        fit(_model(), Plain(), Plain(), epochs=1, run_dir=tmp_path, progress=False)


def test_a_dataset_without_a_description_resumes_under_an_explicit_run_key(tmp_path):
    class Plain(torch.utils.data.Dataset):
        def __init__(self, data):
            self.data = data

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return self.data[i]

    data = Plain(_data())
    kwargs = dict(epochs=2, batch_size=16, seed=1, progress=False)
    straight = fit(_model(), data, data, regularizer=Killer(), **kwargs)
    with pytest.raises(Interrupt):
        fit(
            _model(),
            data,
            data,
            run_dir=tmp_path,
            run_key="toy v1",
            regularizer=Killer(1),
            **kwargs,
        )
    resumed = fit(
        _model(), data, data, run_dir=tmp_path, run_key="toy v1", regularizer=Killer(), **kwargs
    )
    assert _strip_times(resumed.records) == _strip_times(straight.records)
    with pytest.raises(ValueError, match="differs in: run_key"):
        fit(
            _model(), data, data, run_dir=tmp_path, run_key="toy v2", regularizer=Killer(), **kwargs
        )
