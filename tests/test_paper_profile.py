"""The chapters with a ``paper`` profile execute in it, at a tiny scale set through their own
parameters, on fabricated files in each dataset's real on-disk format (``$PILCRO_DATA``), read
by the library's own readers of those formats (torchvision only downloads).

A chapter that cannot be made tiny through the parameters it declares is skipped with the
names of the parameters it lacks (their tiny values are set here already), until it declares them.
"""

import os
import pickle
from pathlib import Path

import numpy as np
import papermill
import pytest
import torch
from PIL import Image

from pilcro_lib.data import load_dataset

REPO = Path(__file__).resolve().parents[1]

# chapter -> the papermill parameters that make its paper profile tiny (the profile's datasets, a
# few images, one epoch); parameters it does not declare yet skip it, named
CHAPTERS = {
    "00_getting_started": dict(dataset="mnist", validation=20, epochs=1, width=2),
    "05_p_objective": dict(
        lam_steps=1,
        bench_width=2,
        bench_rounds=1,
        est_seeds=2,
        est_epochs=1,
        est_width=2,
        est_sizes=[64, 16, 32],
        gate=0.0,
    ),
    "06_p_objective_experiments": dict(
        dataset="mnist",
        n_seeds=2,
        epochs=1,
        n_train=64,
        width=2,
        second_width=2,
        lam_grid=[1.0, 1.0, 1],
        ig_grid=[1.0, 1.0, 1],
        second_grid=[1.0, 1.0, 1],
        gate=0.0,
        position_epochs=1,
        n_val=16,
        n_test=32,
        pos_train=32,
        pos_test=8,
        pos_width=2,
    ),
    "08_lrlc_experiments": dict(
        dataset="mnist",
        n_seeds=2,
        ranks=[1],
        train_size=96,
        val_size=16,
        test_size=40,
        epochs=1,
        width=2,
        gate=0.0,
    ),
}
# chapter 6's other pages take the same parameters as its first (they read the same runs)
CHAPTERS |= {
    page: CHAPTERS["06_p_objective_experiments"]
    for page in (
        "06b_p_objective_speed_accuracy_robustness",
        "06c_p_objective_measure_ablation",
        "06d_p_objective_position_and_resnet",
    )
}


# --------------------------------------------------------------------------- fabricated files


def _idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file of unsigned bytes (MNIST's format)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fabricate_idx(root: Path, folder: str = "MNIST", n_train: int = 200, n_test: int = 80) -> None:
    """``<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (MNIST's files, or
    Fashion-MNIST's under ``FashionMNIST``): noise images, every class present."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def fabricate_cifar10(root: Path, per_batch: int = 20) -> None:
    """``cifar-10-batches-py/``: five training batches, a test batch and ``batches.meta`` (python
    pickles)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [i % 10 for i in range(per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {
        b"label_names": [
            c.encode()
            for c in (
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            )
        ],
        b"num_cases_per_batch": per_batch,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def fabricate_celeba(root: Path, n: int = 12) -> None:
    """``celeba/``: aligned 178x218 JPEGs, the attribute list and the partition list."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(2)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            folder / "img_align_celeba" / name
        )
    attributes = (
        [f"Attribute_{i}" for i in range(20)] + ["Male"] + [f"Attribute_{i}" for i in range(21, 40)]
    )
    rows = [
        f"{name} " + " ".join(str(1 if (i + j) % 2 else -1) for j in range(40))
        for i, name in enumerate(names)
    ]
    (folder / "list_attr_celeba.txt").write_text(
        "\n".join([str(n), " ".join(attributes), *rows]) + "\n"
    )
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{name} {i % 3}\n" for i, name in enumerate(names))
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    fabricate_idx(root)
    fabricate_idx(root, "FashionMNIST", n_train=512)  # chapter 5 reads 512 training images
    fabricate_cifar10(root)
    fabricate_celeba(root)
    return root


# --------------------------------------------------------------------------- the loaders


def test_the_mnist_loader_reads_the_fabricated_files(data_root):
    train = load_dataset("mnist", "train", root=data_root)
    assert (
        train.image_shape == (1, 28, 28)
        and len(train) == 200
        and train.labels.unique().numel() == 10
    )


def test_the_cifar10_loader_reads_the_fabricated_files(data_root):
    train, test = (
        load_dataset("cifar10", "train", root=data_root),
        load_dataset("cifar10", "test", root=data_root),
    )
    assert len(train) == 100 and len(test) == 20 and train.image_shape == (3, 32, 32)
    first = pickle.loads((data_root / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    # a row holds the red, green and blue planes of a 32x32 image, row-major
    assert np.array_equal(train.images[:20].numpy(), first[b"data"].reshape(20, 3, 32, 32))
    assert train.labels[:20].tolist() == first[b"labels"] and train.classes[0] == "airplane"


def test_the_celeba_loader_reads_the_fabricated_files(data_root):
    import torchvision.transforms.functional as TF

    train = load_dataset("celeba", "train", root=data_root)
    assert train.image_shape == (3, 32, 32) and len(train) == 4  # partition 0: images 1, 4, 7, 10
    assert train.labels.tolist() == [0, 1, 0, 1]  # the Male column (21st) of each one's row
    with Image.open(data_root / "celeba" / "img_align_celeba" / "000004.jpg") as image:
        face = TF.resize(
            TF.crop(image, 40, 20, 138, 138), [32, 32], antialias=True
        )  # torchvision's crop and resize
    assert torch.equal(train.images[1], TF.pil_to_tensor(face))
    assert (
        len(load_dataset("celeba", "test", root=data_root)) == 4
    )  # partition 2; 1 (validation) is in neither


def test_fashion_mnist_under_the_data_folder_comes_before_debians(data_root):
    assert len(load_dataset("fashion_mnist", "train", root=data_root)) == 512


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _remove_male(path: Path) -> None:
    path.write_text(path.read_text().replace("Male", "Female"))


# (dataset, file under the data folder, how it is damaged, the error, what its message says)
DAMAGE = [
    (
        "cifar10",
        "cifar-10-batches-py/data_batch_3",
        Path.unlink,
        FileNotFoundError,
        "data_batch_3 was not found.*download=True",
    ),
    (
        "cifar10",
        "cifar-10-batches-py/data_batch_1",
        _cut,
        ValueError,
        "data_batch_1.*damaged or truncated.*download=True",
    ),
    (
        "cifar10",
        "cifar-10-batches-py/batches.meta",
        lambda p: p.write_bytes(pickle.dumps({b"label_names": [b"cat"] * 10})),
        ValueError,
        "batches.meta.*names the classes",
    ),
    (
        "cifar10",
        "cifar-10-batches-py/test_batch",
        lambda p: p.write_bytes(pickle.dumps(os.getcwd)),
        ValueError,
        "test_batch.*damaged.*posix.getcwd",
    ),
    (
        "celeba",
        "celeba/list_attr_celeba.txt",
        Path.unlink,
        FileNotFoundError,
        "list_attr_celeba.txt was not found.*celeba",
    ),
    (
        "celeba",
        "celeba/list_attr_celeba.txt",
        _remove_male,
        ValueError,
        "list_attr_celeba.txt.*including Male",
    ),
    (
        "celeba",
        "celeba/list_eval_partition.txt",
        lambda p: p.write_text(p.read_text()[:-4]),
        ValueError,
        "list_eval_partition.txt.*damaged: line 12",
    ),
    (
        "celeba",
        "celeba/img_align_celeba/000007.jpg",
        _cut,
        ValueError,
        "000007.jpg.*damaged or not a JPEG.*download=True",
    ),
    (
        "celeba",
        "celeba/img_align_celeba/000004.jpg",
        Path.unlink,
        FileNotFoundError,
        "000004.jpg was not found",
    ),
]


@pytest.mark.parametrize(
    "name, file, damage, error, match", DAMAGE, ids=[f"{d[1]}-{i}" for i, d in enumerate(DAMAGE)]
)
def test_a_missing_or_damaged_file_is_named_with_how_to_get_it(
    name, file, damage, error, match, tmp_path
):
    {"cifar10": fabricate_cifar10, "celeba": fabricate_celeba}[name](tmp_path)
    damage(tmp_path / file)
    with pytest.raises(error, match=match):
        load_dataset(name, "train" if "test_batch" not in file else "test", root=tmp_path)


# --------------------------------------------------------------------------- the chapters


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_a_chapter_executes_in_the_paper_profile_at_a_tiny_scale(
    chapter, data_root, tmp_path, monkeypatch
):
    notebook = REPO / "notebooks" / f"{chapter}.ipynb"
    parameters = CHAPTERS[chapter]
    missing = [name for name in parameters if name not in papermill.inspect_notebook(str(notebook))]
    if missing:
        pytest.skip(
            f"{chapter} cannot be made tiny in the paper profile: it lacks the parameters "
            + ", ".join(missing)
        )
    monkeypatch.setenv("PILCRO_PROFILE", "paper")
    monkeypatch.setenv("PILCRO_DATA", str(data_root))
    monkeypatch.setenv("PILCRO_RECORDS", str(tmp_path / "records"))
    monkeypatch.setenv("PILCRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    executed = papermill.execute_notebook(
        str(notebook),
        str(tmp_path / notebook.name),
        parameters=parameters,
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    printed = "".join(
        "".join(o.get("text", "")) for c in executed.cells for o in c.get("outputs", [])
    )
    assert "paper" in printed and "PILCRO_METRICS" in printed
