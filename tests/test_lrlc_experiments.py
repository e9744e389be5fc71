import math

import pytest
import torch
from torch import nn

from pilcro_lib.data import ImageDataset
from pilcro_lib.layers import LowRankLocallyConnected2d, layer_combining_weights
from pilcro_lib.lrlc_experiments import (
    ARMS,
    EntropyLog,
    arm_net,
    combining_entropy,
    downsample,
    load_splits,
    position_tasks,
    position_variation,
    train_arm,
)
from pilcro_lib.models import he_uniform_init_, reference_net, remove_spatial_bias_


def _dataset(n=24, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 3, ["a", "b", "c"], "toy")


def test_downsample_averages_blocks():
    data = _dataset(n=2, size=4)
    out = downsample(data, 2)
    x = data.float_images()
    assert out.image_shape == (1, 2, 2) and torch.equal(out.labels, data.labels)
    torch.testing.assert_close(out.images[0, 0, 1, 0], x[0, 0, 2:4, 0:2].mean())
    assert downsample(data, 1) is data
    with pytest.raises(ValueError, match="factor=5"):
        downsample(data, 5)
    with pytest.raises(ValueError, match="factor"):
        downsample(data, 0)


def test_position_tasks_centre_or_move_the_images():
    data = _dataset(n=40, size=4)
    tasks = position_tasks([data, data], 10, seed=3)
    assert tasks["real"] == (data, data)
    aligned, translated = tasks["aligned"][0], tasks["translated"][0]
    assert aligned.image_shape == (1, 10, 10)
    assert torch.equal(aligned.images[:, :, 3:7, 3:7], data.float_images())  # (10 - 4) // 2 = 3
    assert (aligned.offsets == 3).all() and len(set(map(tuple, translated.offsets.tolist()))) > 10
    assert not torch.equal(
        tasks["translated"][0].offsets, tasks["translated"][1].offsets
    )  # seeds differ by split


def test_every_arm_builds_with_its_first_layer():
    firsts = {}
    for arm in ARMS:
        net = arm_net(arm, rank=2, input_size=12, width=4)
        assert net(torch.rand(2, 1, 12, 12)).shape == (2, 10)
        firsts[arm] = type(net[0]).__name__
    assert (
        firsts["lc"] == "LocallyConnected2d" and firsts["lrlc_input"] == "LowRankLocallyConnected2d"
    )
    assert (
        firsts["conv"] == firsts["wide_conv"] == "Conv2d" and firsts["coordconv"] == "CoordConv2d"
    )
    wide, lrlc = (
        arm_net("wide_conv", rank=4, input_size=12, width=4),
        arm_net("lrlc", rank=4, input_size=12, width=4),
    )
    assert wide[0].out_channels > 4
    assert (
        abs(sum(p.numel() for p in wide.parameters()) - sum(p.numel() for p in lrlc.parameters()))
        < 40
    )
    with pytest.raises(ValueError, match="arm"):
        arm_net("dense")


def test_he_uniform_init_matches_the_lrlc_bases_and_skips_the_combining_head():
    torch.manual_seed(0)
    conv = he_uniform_init_(nn.Sequential(nn.Conv2d(64, 256, 3, bias=True)))[0]
    bound = math.sqrt(6 / (64 * 9))  # the bound of the LC and LRLC initialisation
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.99 * bound
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.01)
    assert (conv.bias == 0).all()
    lrlc = LowRankLocallyConnected2d(64, 256, 3, 8, 2, bias=False)
    assert lrlc.weight.abs().max() <= bound and lrlc.weight.std().item() == pytest.approx(
        conv.weight.std().item(), rel=0.02
    )
    net = reference_net(("lrlc_input", "conv", "conv"), input_size=12, width=4)
    head = [p.clone() for p in net[0].head.parameters()]
    he_uniform_init_(net)
    assert all(torch.equal(a, b) for a, b in zip(head, net[0].head.parameters()))
    assert net[3].weight.abs().max() <= math.sqrt(6 / 36)
    coord = arm_net("coordconv", input_size=12, width=4)[0].conv
    assert coord.weight.abs().max() <= math.sqrt(6 / (3 * 9))


def _as_conv_net(lrlc_net, conv_net):
    """Copy everything but the spatial biases of ``lrlc_net`` into ``conv_net`` (the same net with a
    conv first)."""
    state = {k: v for k, v in lrlc_net.state_dict().items() if not k.startswith("0.")}
    conv_net.load_state_dict({**state, "0.weight": lrlc_net[0].weight}, strict=True)


def test_rank_one_without_spatial_bias_is_a_convolution_and_with_it_is_not():
    torch.manual_seed(1)
    x = torch.rand(6, 1, 10, 10)
    plain = arm_net("lrlc_no_spatial_bias", rank=1, input_size=10, width=4)
    biased = arm_net("lrlc", rank=1, input_size=10, width=4)
    conv = arm_net("conv", input_size=10, width=4)
    assert (
        plain[0].row_bias is None
        and plain[0].col_bias is None
        and "0.row_bias" not in plain.state_dict()
    )
    _as_conv_net(plain, conv)
    torch.testing.assert_close(plain(x), conv(x))  # train mode: BatchNorm with batch statistics
    biased.load_state_dict(
        {**plain.state_dict(), "0.row_bias": torch.linspace(-1, 1, 8), "0.col_bias": torch.zeros(8)}
    )
    after_norm = biased[:2](x) - conv[:2](
        x
    )  # BatchNorm does not remove an offset that varies with the row
    assert after_norm.abs().max() > 0.1
    with pytest.raises(TypeError, match="model"):
        remove_spatial_bias_("net")


def test_combining_entropy_closed_forms():
    w = torch.tensor([[0.25] * 4, [1.0, 0, 0, 0], [0.5, 0.5, 0, 0]])
    torch.testing.assert_close(
        combining_entropy(w), torch.tensor([1.0, 0.0, math.log(2) / math.log(4)])
    )
    assert combining_entropy(torch.ones(3, 1)).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="weights"):
        combining_entropy(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="weights"):
        combining_entropy(torch.tensor(1.0))


def test_position_variation_closed_forms():
    a = torch.randn(4, 3, 3)
    assert position_variation(a.expand(2, 5, 4, 3, 3)) == pytest.approx(0.0, abs=1e-12)
    assert position_variation(torch.stack([a, -a]).view(1, 2, 4, 3, 3)) == pytest.approx(1.0)
    assert position_variation(torch.stack([a, 0 * a]).view(2, 1, 4, 3, 3)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="all zero"):
        position_variation(torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match="kernels"):
        position_variation(torch.ones(2, 2))


def test_layer_combining_weights_per_example():
    torch.manual_seed(2)
    net = arm_net("lrlc_input", rank=3, input_size=10, width=4)
    x = torch.rand(5, 1, 10, 10)
    alpha = layer_combining_weights(net, x)
    assert alpha.shape == (5, 8, 8, 3) and net.training
    torch.testing.assert_close(alpha.sum(-1), torch.ones(5, 8, 8))
    torch.testing.assert_close(
        alpha[2], net[0].combining_weights(x[2:3])[0]
    )  # the first layer sees the input
    shared = arm_net("lrlc", rank=3, input_size=10, width=4)
    torch.testing.assert_close(layer_combining_weights(shared, x)[4], shared[0].combining_weights())
    with pytest.raises(ValueError, match="inputs"):
        layer_combining_weights(net, torch.rand(10, 10))


def test_entropy_log_starts_uniform_and_refuses_a_net_without_lrlc():
    net = arm_net("lrlc", rank=4, input_size=10, width=4)
    log = EntropyLog(net, torch.rand(3, 1, 10, 10))
    assert log(net, None, None, None) is None
    assert log.epoch_log()["entropy"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no LRLC"):
        EntropyLog(arm_net("conv", input_size=10, width=4), torch.rand(3, 1, 10, 10))


@pytest.mark.parametrize("arm", ["conv", "lc", "lrlc", "lrlc_input"])
def test_train_arm_returns_what_the_chapter_reads(arm):
    data = _dataset(n=32, size=10)
    m = train_arm(
        arm=arm,
        rank=2,
        train=data,
        val=data,
        test=data,
        epochs=2,
        width=2,
        seed=0,
        probe_size=8,
        examples=2,
    )
    assert (
        [r["epoch"] for r in m["history"]] == [1, 2] and 0 <= m["test_acc"] <= 1 and m["params"] > 0
    )
    assert ("entropy" in m["history"][0]) == arm.startswith("lrlc")
    assert ("kernel_variation" in m) == (arm in ("lc", "lrlc"))
    if arm == "lrlc":
        assert torch.tensor(m["combining_weights"]).shape == (8, 8, 2)
        assert m["initial_entropy"] == pytest.approx(1.0) and 0 < m["kernel_variation"] < 1
    if arm == "lrlc_input":
        assert torch.tensor(m["example_weights"]).shape == (2, 8, 8, 2)
        assert torch.tensor(m["example_images"]).shape == (2, 1, 10, 10)
        assert m["across_examples"] >= 0 and m["across_positions"] >= 0


def test_load_splits_draws_validation_from_the_training_split():
    train, val, test = load_splits(
        "fashion_mnist_sample", train_size=50, val_size=20, test_size=30, seed=1
    )
    assert (len(train), len(val), len(test)) == (50, 20, 30)
    rows = {bytes(x.numpy()) for x in train.images} & {bytes(x.numpy()) for x in val.images}
    assert not rows  # disjoint
    train, val, _ = load_splits("fashion_mnist_sample", train_size=90, test_size=5)
    assert (len(train), len(val)) == (90, 10)  # 10% of the 100 training images used
    train, val, _ = load_splits("fashion_mnist_sample", test_size=5, val_share=0.25)
    assert (len(train), len(val)) == (1500, 500)
    with pytest.raises(ValueError, match="val_share"):
        load_splits("fashion_mnist_sample", val_share=1.0)


def test_train_arm_refuses_bad_arguments():
    data = _dataset(n=8, size=6)
    with pytest.raises(ValueError, match="arm"):
        train_arm(arm="dense", rank=1, train=data, val=data, test=data, epochs=1, width=2, seed=0)
    with pytest.raises(ValueError, match="examples"):
        train_arm(
            arm="conv",
            rank=1,
            train=data,
            val=data,
            test=data,
            epochs=1,
            width=2,
            seed=0,
            examples=-1,
        )
