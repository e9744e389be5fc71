"""The chapters with a ``paper`` profile execute in it, at a tiny scale set through their own
parameters, on fabricated files in each dataset's real on-disk format read by the real
torchvision loaders (``$PILCRO_DATA``).

A chapter that cannot be made tiny through the parameters it declares is skipped with the
names of the parameters it lacks (their tiny values are set here already), until it declares them.
Fabricated CIFAR-10 and CelebA files cannot pass torchvision's MD5 checks of the real files
(``download=False`` verifies them), so their loaders are expected to refuse them (strict xfail).
"""

import pickle
from pathlib import Path

import numpy as np
import papermill
import pytest
from PIL import Image

from pilcro_lib.data import load_dataset

REPO = Path(__file__).resolve().parents[1]

# chapter -> the papermill parameters that make its paper profile tiny (the profile's datasets, a few
# images, one epoch); parameters it does not declare yet skip it, named
CHAPTERS = {
    "00_getting_started": dict(dataset="mnist", epochs=1, width=2),
    "05_p_objective": dict(lam_steps=1, bench_width=2, bench_rounds=1, est_seeds=2,
                           est_epochs=1, est_width=2, est_sizes=[64, 16, 32]),
    "06_p_objective_experiments": dict(dataset="mnist", n_seeds=2, epochs=1, n_train=64, width=2,
                                       position_epochs=1, n_val=16, n_test=32, pos_train=32, pos_test=8, pos_width=2),
    "08_lrlc_experiments": dict(dataset="mnist", n_seeds=2, ranks=[1], compare_rank=1, train_size=96, test_size=40,
                                epochs=1, width=2),
}


# --------------------------------------------------------------------------- fabricated files


def _idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file of unsigned bytes (MNIST's format)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fabricate_mnist(root: Path, n_train: int = 200, n_test: int = 80) -> None:
    """``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``: noise images, every class present."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def fabricate_cifar10(root: Path, per_batch: int = 20) -> None:
    """``cifar-10-batches-py/``: five training batches, a test batch and ``batches.meta`` (python pickles)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": [i % 10 for i in range(per_batch)],
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {b"label_names": [c.encode() for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                  "horse", "ship", "truck")], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def fabricate_celeba(root: Path, n: int = 12) -> None:
    """``celeba/``: aligned 178x218 JPEGs and the attribute, partition, identity, box and landmark lists."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(2)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / "img_align_celeba" / name)
    attributes = [f"Attribute_{i}" for i in range(20)] + ["Male"] + [f"Attribute_{i}" for i in range(21, 40)]
    rows = [f"{name} " + " ".join(str(1 if (i + j) % 2 else -1) for j in range(40)) for i, name in enumerate(names)]
    (folder / "list_attr_celeba.txt").write_text("\n".join([str(n), " ".join(attributes), *rows]) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{name} {i % 3}\n" for i, name in enumerate(names)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{name} {i + 1}\n" for i, name in enumerate(names)))
    (folder / "list_bbox_celeba.txt").write_text(
        "\n".join([str(n), "image_id x_1 y_1 width height", *(f"{name} 10 10 100 120" for name in names)]) + "\n")
    (folder / "list_landmarks_align_celeba.txt").write_text("\n".join(
        [str(n), "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
         "rightmouth_y", *(f"{name} 69 109 106 113 77 142 73 152 108 154" for name in names)]) + "\n")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    fabricate_mnist(root)
    fabricate_cifar10(root)
    fabricate_celeba(root)
    return root


# --------------------------------------------------------------------------- the loaders


def test_the_mnist_loader_reads_the_fabricated_files(data_root):
    train = load_dataset("mnist", "train", root=data_root)
    assert train.image_shape == (1, 28, 28) and len(train) == 200 and train.labels.unique().numel() == 10


@pytest.mark.xfail(strict=True, raises=FileNotFoundError,
                   reason="torchvision checks the MD5 of each real CIFAR-10 file; fabricated files cannot pass")
def test_the_cifar10_loader_reads_the_fabricated_files(data_root):
    assert len(load_dataset("cifar10", "train", root=data_root)) == 100


@pytest.mark.xfail(strict=True, raises=FileNotFoundError,
                   reason="torchvision checks the MD5 of each real CelebA list file; fabricated files cannot pass")
def test_the_celeba_loader_reads_the_fabricated_files(data_root):
    assert load_dataset("celeba", "train", root=data_root).image_shape == (3, 32, 32)


# --------------------------------------------------------------------------- the chapters


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_a_chapter_executes_in_the_paper_profile_at_a_tiny_scale(chapter, data_root, tmp_path, monkeypatch):
    notebook = REPO / "notebooks" / f"{chapter}.ipynb"
    parameters = CHAPTERS[chapter]
    missing = [name for name in parameters if name not in papermill.inspect_notebook(str(notebook))]
    if missing:
        pytest.skip(f"{chapter} cannot be made tiny in the paper profile: it lacks the parameters " + ", ".join(missing))
    monkeypatch.setenv("PILCRO_PROFILE", "paper")
    monkeypatch.setenv("PILCRO_DATA", str(data_root))
    monkeypatch.setenv("PILCRO_RECORDS", str(tmp_path / "records"))
    monkeypatch.setenv("PILCRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    executed = papermill.execute_notebook(str(notebook), str(tmp_path / notebook.name), parameters=parameters,
                                          cwd=str(notebook.parent), progress_bar=False)
    printed = "".join("".join(o.get("text", "")) for c in executed.cells for o in c.get("outputs", []))
    assert "paper" in printed and "PILCRO_METRICS" in printed
