"""Datasets: digits, CIFAR-10 python batches and image folders written here in their real formats."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from codesign.data import load_dataset
from codesign.errors import CodesignError


def test_digits_splits_are_disjoint_and_scaled():
    xtr, ytr = load_dataset("digits", "train")
    xte, yte = load_dataset("digits", "test")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0.0 <= xtr.min() and xtr.max() == 1.0
    assert set(ytr) == set(range(10)) == set(yte)
    train_rows = {x.tobytes() for x in xtr}
    assert sum(x.tobytes() in train_rows for x in xte) < 10          # a handful of digits are drawn identically


def write_cifar_batch(path, images, labels):
    """The layout of cifar-10-python.tar.gz: a Python-2 pickle with bytes keys."""
    batch = {b"batch_label": b"test batch", b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


@pytest.fixture
def cifar(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = []
    for i in range(1, 3):
        images = rng.integers(0, 256, size=(5, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=5)
        write_cifar_batch(folder / f"data_batch_{i}", images, labels)
        batches.append((images, labels))
    test_images = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    write_cifar_batch(folder / "test_batch", test_images, [0, 1, 2, 9])
    return tmp_path, batches, test_images


def test_cifar10_reads_python_batches(cifar):
    root, batches, test_images = cifar
    x, y = load_dataset(f"cifar10:{root}", "train")                  # the parent folder works too
    assert x.shape == (10, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), np.concatenate([b[0] for b in batches]))
    np.testing.assert_array_equal(y, np.concatenate([b[1] for b in batches]))
    xt, yt = load_dataset(f"cifar10:{root / 'cifar-10-batches-py'}", "test")
    assert yt.tolist() == [0, 1, 2, 9]
    np.testing.assert_array_equal(np.rint(xt * 255).astype(np.uint8), test_images)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({b"data": Evil(), b"labels": [0]}, handle, protocol=2)
    with pytest.raises(CodesignError, match="not a CIFAR-10 python batch.*refusing to load"):
        load_dataset(f"cifar10:{tmp_path}", "test")


def test_cifar10_errors_name_the_fix(tmp_path):
    with pytest.raises(CodesignError, match="CIFAR-10 folder not found"):
        load_dataset(f"cifar10:{tmp_path / 'nope'}", "train")
    with pytest.raises(CodesignError, match="no data_batch_1"):
        load_dataset(f"cifar10:{tmp_path}", "train")
    write_cifar_batch(tmp_path / "test_batch", np.zeros((2, 3, 16, 16), np.uint8), [0, 1])
    with pytest.raises(CodesignError, match=r"expected 'data' of shape \[n, 3072\]"):
        load_dataset(f"cifar10:{tmp_path}", "test")


def save_image(path, color, size=(40, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_imagefolder_split_by_subfolders(tmp_path):
    for split, count in (("train", 3), ("val", 2)):
        for name, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            for i in range(count):
                save_image(tmp_path / split / name / f"{i}.png", color)
    x, y = load_dataset(f"imagefolder:{tmp_path}", "train")
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.allclose(x[0, 0], 1.0) and np.allclose(x[0, 2], 0.0)        # cat: red
    assert np.allclose(x[5, 2], 1.0) and np.allclose(x[5, 0], 0.0)        # dog: blue
    xt, yt = load_dataset(f"imagefolder:{tmp_path}:16", "test")
    assert xt.shape == (4, 3, 16, 16) and yt.tolist() == [0, 0, 1, 1]


def test_imagefolder_without_splits_holds_out_a_fifth(tmp_path):
    for name in ("a", "b", "c"):
        for i in range(10):
            save_image(tmp_path / name / f"{i:02d}.jpg", (i * 20, 100, 50))
    x, y = load_dataset(f"imagefolder:{tmp_path}", "train")
    xt, yt = load_dataset(f"imagefolder:{tmp_path}", "test")
    assert len(y) == 24 and len(yt) == 6
    assert np.bincount(yt).tolist() == [2, 2, 2]
    train_keys = {(int(label), round(float(img[0, 0, 0]), 3)) for img, label in zip(x, y)}
    test_keys = {(int(label), round(float(img[0, 0, 0]), 3)) for img, label in zip(xt, yt)}
    assert not train_keys & test_keys                                    # no image in both splits
    again, _ = load_dataset(f"imagefolder:{tmp_path}", "test")
    np.testing.assert_array_equal(again, xt)                             # the split is deterministic


def test_imagefolder_centre_crops_after_resizing_the_shorter_side(tmp_path):
    image = Image.new("RGB", (64, 32), (0, 0, 0))
    image.paste((255, 255, 255), (16, 0, 48, 32))                        # white middle half
    for name in ("p", "q"):
        (tmp_path / name).mkdir()
        image.save(tmp_path / name / "x.png")
        image.save(tmp_path / name / "y.png")
    x, _ = load_dataset(f"imagefolder:{tmp_path}:16", "train")
    assert x.shape[2:] == (16, 16)
    assert np.allclose(x[0, :, :, 1:-1], 1.0)                             # only the white half survives the crop
    assert (x[0, :, :, [0, -1]] > 0.5).all()                              # (its edges blend with the black)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(CodesignError, match="image folder not found"):
        load_dataset(f"imagefolder:{tmp_path / 'x'}", "train")
    save_image(tmp_path / "only" / "a.png", (1, 2, 3))
    with pytest.raises(CodesignError, match="at least two class sub-folders"):
        load_dataset(f"imagefolder:{tmp_path}", "train")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(CodesignError, match="cannot read image"):
        load_dataset(f"imagefolder:{tmp_path}", "train")


def test_unknown_specs_and_splits():
    with pytest.raises(CodesignError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(CodesignError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10")
    with pytest.raises(CodesignError, match="split must be"):
        load_dataset("digits", "validation")
