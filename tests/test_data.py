"""Datasets: digits, CIFAR-10 python batches and image folders written here in their real formats."""

import hashlib
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from codesign.data import load_dataset
from codesign.errors import CodesignError


def fingerprint(images, labels):
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]


def test_digits_splits_are_disjoint_and_scaled():
    xtr, ytr = load_dataset("digits", "train")
    xva, yva = load_dataset("digits", "val")
    xte, yte = load_dataset("digits", "test")
    assert xtr.shape == (1077, 1, 8, 8) and xva.shape == xte.shape == (360, 1, 8, 8)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0.0 <= xtr.min() and xtr.max() == 1.0
    assert set(ytr) == set(range(10)) == set(yva) == set(yte)
    train_rows = {x.tobytes() for x in xtr}
    val_rows = {x.tobytes() for x in xva}
    assert sum(x.tobytes() in train_rows for x in xte) < 10          # a handful of digits are drawn identically
    assert sum(x.tobytes() in train_rows for x in xva) < 10
    assert sum(x.tobytes() in val_rows for x in xte) < 10


def test_digits_val_is_carved_from_the_former_training_split():
    # Fingerprints of the two splits of codesign before the val split existed (1437 train, 360 test):
    # the test images are unchanged, and the former training images are train followed by val.
    xtr, ytr = load_dataset("digits", "train")
    xva, yva = load_dataset("digits", "val")
    assert fingerprint(*load_dataset("digits", "test")) == "44da13355d395c95"
    assert fingerprint(np.concatenate([xtr, xva]), np.concatenate([ytr, yva])) == "8f8f76090da8682e"


def write_cifar_batch(path, images, labels):
    """The layout of cifar-10-python.tar.gz: a Python-2 pickle with bytes keys."""
    batch = {b"batch_label": b"test batch", b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


def cifar_images(rng, count):
    return rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=count)


def test_cifar10_reads_python_batches_with_the_last_5000_training_images_as_val(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = [cifar_images(rng, 7), cifar_images(rng, 4998)]          # 5005 training images in all
    for i, (images, labels) in enumerate(batches, start=1):
        write_cifar_batch(folder / f"data_batch_{i}", images, labels)
    test_images, _ = cifar_images(rng, 4)
    write_cifar_batch(folder / "test_batch", test_images, [0, 1, 2, 9])

    x, y = load_dataset(f"cifar10:{tmp_path}", "train")                 # the parent folder works too
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), batches[0][0][:5])
    np.testing.assert_array_equal(y, batches[0][1][:5])
    xv, yv = load_dataset(f"cifar10:{folder}", "val")
    assert len(yv) == 5000
    np.testing.assert_array_equal(np.rint(xv[:2] * 255).astype(np.uint8), batches[0][0][5:])
    np.testing.assert_array_equal(np.rint(xv[2:] * 255).astype(np.uint8), batches[1][0])
    np.testing.assert_array_equal(yv, np.concatenate([batches[0][1][5:], batches[1][1]]))
    xt, yt = load_dataset(f"cifar10:{folder}", "test")
    assert yt.tolist() == [0, 1, 2, 9]
    np.testing.assert_array_equal(np.rint(xt * 255).astype(np.uint8), test_images)


def test_paths_after_the_dataset_name_expand_the_home_folder(tmp_path, monkeypatch):
    """The README's own example, cifar10:~/cifar-10-batches-py (the shell does not expand ~ after ':')."""
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    write_cifar_batch(folder / "test_batch", cifar_images(np.random.default_rng(2), 3)[0], [4, 5, 6])
    assert load_dataset("cifar10:~/cifar-10-batches-py", "test")[1].tolist() == [4, 5, 6]
    save_classes(tmp_path / "pictures" / "train", 2)
    save_classes(tmp_path / "pictures" / "test", 1)
    assert load_dataset("imagefolder:~/pictures", "test")[1].tolist() == [0, 1]
    assert load_dataset("imagefolder:~/pictures:8", "test")[0].shape == (2, 3, 8, 8)


def test_cifar10_too_few_training_images_for_a_val_split(tmp_path):
    images, labels = cifar_images(np.random.default_rng(1), 10)
    write_cifar_batch(tmp_path / "data_batch_1", images, labels)
    for split in ("train", "val"):
        with pytest.raises(CodesignError, match="hold 10 images, but the last 5000 form the val split"):
            load_dataset(f"cifar10:{tmp_path}", split)


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


def save_classes(root, counts, colors=(("cat", (255, 0, 0)), ("dog", (0, 0, 255)))):
    for name, color in colors:
        for i in range(counts):
            save_image(root / name / f"{i:02d}.png", color)


def test_imagefolder_split_by_subfolders(tmp_path):
    save_classes(tmp_path / "train", 3)
    save_classes(tmp_path / "val", 1)
    save_classes(tmp_path / "test", 2)
    x, y = load_dataset(f"imagefolder:{tmp_path}", "train")
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.allclose(x[0, 0], 1.0) and np.allclose(x[0, 2], 0.0)        # cat: red
    assert np.allclose(x[5, 2], 1.0) and np.allclose(x[5, 0], 0.0)        # dog: blue
    assert load_dataset(f"imagefolder:{tmp_path}", "val")[1].tolist() == [0, 1]
    xt, yt = load_dataset(f"imagefolder:{tmp_path}:16", "test")
    assert xt.shape == (4, 3, 16, 16) and yt.tolist() == [0, 0, 1, 1]


def test_imagefolder_without_val_folder_holds_out_a_tenth_of_train(tmp_path):
    colors = [(name, (20 * i, 7 * i, 3 * i)) for i, name in enumerate(("a", "b"), start=1)]
    for name, _ in colors:
        for i in range(20):
            save_image(tmp_path / "train" / name / f"{i:02d}.png", (10 * i, 100, 50))
    save_classes(tmp_path / "test", 1, colors)
    x, y = load_dataset(f"imagefolder:{tmp_path}", "train")
    xv, yv = load_dataset(f"imagefolder:{tmp_path}", "val")
    assert np.bincount(y).tolist() == [18, 18] and np.bincount(yv).tolist() == [2, 2]
    train_keys = {(int(label), round(float(img[0, 0, 0]), 3)) for img, label in zip(x, y)}
    val_keys = {(int(label), round(float(img[0, 0, 0]), 3)) for img, label in zip(xv, yv)}
    assert not train_keys & val_keys and len(train_keys | val_keys) == 40
    assert load_dataset(f"imagefolder:{tmp_path}", "test")[1].tolist() == [0, 1]


def test_imagefolder_train_and_val_only_takes_val_as_test(tmp_path):
    save_classes(tmp_path / "train", 10)
    save_classes(tmp_path / "val", 2)
    assert load_dataset(f"imagefolder:{tmp_path}", "test")[1].tolist() == [0, 0, 1, 1]
    assert len(load_dataset(f"imagefolder:{tmp_path}", "val")[1]) == 2          # 10 % of the 20 training images
    assert len(load_dataset(f"imagefolder:{tmp_path}", "train")[1]) == 18


def test_imagefolder_without_splits_holds_out_a_fifth_then_a_tenth(tmp_path):
    for name in ("a", "b", "c"):
        for i in range(10):
            save_image(tmp_path / name / f"{i:02d}.jpg", (i * 20, 100, 50))
    splits = {split: load_dataset(f"imagefolder:{tmp_path}", split) for split in ("train", "val", "test")}
    assert [len(splits[s][1]) for s in ("train", "val", "test")] == [21, 3, 6]   # 10 = 7 + 1 + 2 per class
    assert np.bincount(splits["test"][1]).tolist() == [2, 2, 2] == [2 * n for n in np.bincount(splits["val"][1])]
    keys = {split: {(int(label), round(float(img[0, 0, 0]), 3)) for img, label in zip(*pair)}
            for split, pair in splits.items()}
    assert not keys["train"] & keys["test"] and not keys["val"] & keys["test"] and not keys["train"] & keys["val"]
    again, _ = load_dataset(f"imagefolder:{tmp_path}", "test")
    np.testing.assert_array_equal(again, splits["test"][0])             # the split is deterministic


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


def test_imagefolder_split_folders_must_share_classes(tmp_path):
    save_classes(tmp_path / "train", 2)
    save_classes(tmp_path / "test", 1)
    save_classes(tmp_path / "val", 1, [("cat", (1, 2, 3)), ("cow", (3, 2, 1))])
    with pytest.raises(CodesignError, match="class folders of train/ and val/ differ"):
        load_dataset(f"imagefolder:{tmp_path}", "train")


def test_unknown_specs_and_splits():
    with pytest.raises(CodesignError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(CodesignError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10")
    with pytest.raises(CodesignError, match="split must be"):
        load_dataset("digits", "validation")
