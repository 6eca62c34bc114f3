"""Datasets named on the command line with ``--data SPEC``.

:func:`load_dataset` parses a SPEC and returns ``(images, labels)`` of one split as numpy arrays:
float32 images ``[n, C, H, W]`` with values 0–1 (unsigned, as the crossbar's input DACs expect; no
mean/std normalisation — models with batch norm absorb it) and int64 labels ``0..classes−1``.

A ``~`` at the start of a ``PATH`` is the home folder, as in a shell (``cifar10:~/cifar-10-batches-py``).

Every dataset has three disjoint splits: ``train`` fits the weights (and supplies activation
scales and calibration statistics, which read no labels); ``val`` is for choices made by looking
at accuracy — ``codesign calibrate`` searches its ADC settings on it; ``test`` is kept for the
accuracy that gets reported, and nothing is tuned on it.

``digits``
    scikit-learn's bundled 8×8 digits (real data, offline): ``[n, 1, 8, 8]``. A seeded permutation
    of the 1797 images: its last 360 are ``test``, the 360 before them ``val``, the first 1077
    ``train``.
``cifar10:PATH``
    CIFAR-10 in its python-batches format (the folder ``cifar-10-batches-py`` of
    ``cifar-10-python.tar.gz``, or its parent): ``test_batch`` is ``test``; of ``data_batch_1`` …
    ``data_batch_5`` in order, the last 5000 images are ``val`` and the other 45 000 ``train``;
    ``[n, 3, 32, 32]``. The pickles are read with an unpickler that admits only numpy arrays,
    so a tampered file cannot run code.
``imagefolder:PATH`` or ``imagefolder:PATH:SIZE``
    Your own images, one sub-folder per class (torchvision's ImageFolder layout). With ``train/``
    and ``test/`` sub-folders those are the ``train`` and ``test`` splits, and ``val/`` is ``val``
    if it exists. With ``train/`` and ``val/`` only (ImageNet's layout, whose ``val/`` is the set
    everyone reports) ``val/`` is the ``test`` split. Without such sub-folders, each class's files,
    sorted by name, are split by a seeded permutation into 20 % ``test`` and the rest. Wherever no
    ``val/`` folder serves, ``val`` is a seeded 10 % of each class of the training files and
    ``train`` the other 90 %.
    Images are converted to RGB, their shorter side resized to ``SIZE`` (default 32) with bilinear
    filtering, then centre-cropped to ``SIZE × SIZE``: ``[n, 3, SIZE, SIZE]``. Classes are the
    sub-folder names in sorted order.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .errors import CodesignError

DIGITS_HELD_OUT = 360            #: Images in each of the digits' val and test splits.
SPLITS = ("train", "val", "test")
CIFAR_VAL = 5000                 #: The last images of the training batches that form the val split.
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}
IMAGEFOLDER_SIZE = 32
IMAGEFOLDER_TEST_SHARE = 0.2
IMAGEFOLDER_VAL_SHARE = 0.1


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise CodesignError(f"split must be 'train', 'val' or 'test', not {split!r}")


def digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The ``train``, ``val`` or ``test`` split of the 1797 digits (seeded permutation)."""
    from sklearn.datasets import load_digits

    _check_split(split)
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    cut = len(order) - 2 * DIGITS_HELD_OUT
    chosen = {"train": order[:cut], "val": order[cut:-DIGITS_HELD_OUT], "test": order[-DIGITS_HELD_OUT:]}[split]
    return images[chosen], labels[chosen]


def load_dataset(spec: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``split`` ('train', 'val' or 'test') of the dataset named by ``spec``."""
    _check_split(split)
    name, _, argument = spec.partition(":")
    if name == "digits" and not argument:
        return digits(split)
    if name == "cifar10" and argument:
        return cifar10(Path(argument).expanduser(), split)
    if name == "imagefolder" and argument:
        path, size = _path_and_size(argument)
        return imagefolder(path, split, size)
    raise CodesignError(f"unknown dataset '{spec}': use 'digits', 'cifar10:PATH' or 'imagefolder:PATH[:SIZE]'")


# --- CIFAR-10 ---------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch holds: dicts, lists, bytes, numbers and numpy arrays
    (``_codecs.encode`` is how protocol-2 pickles written by Python 3 spell bytes)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with file.open("rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise CodesignError(f"{file} is not a CIFAR-10 python batch ({exc}); re-extract cifar-10-python.tar.gz") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise CodesignError(f"{file}: expected 'data' of shape [n, 3072] and n labels, found {list(data.shape)} "
                            f"and {len(labels)}; re-extract cifar-10-python.tar.gz")
    if labels.size and not (0 <= labels.min() and labels.max() <= 9):
        raise CodesignError(f"{file}: labels must be 0–9")
    return data, labels


def cifar10(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from its python batches in ``path`` (or ``path/cifar-10-batches-py``)."""
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    if not path.is_dir():
        raise CodesignError(f"CIFAR-10 folder not found: {path} (extract cifar-10-python.tar.gz and give "
                            f"the cifar-10-batches-py folder)")
    names = [CIFAR_TEST] if split == "test" else [n for n in CIFAR_TRAIN if (path / n).is_file()]
    if not names or not (path / names[0]).is_file():
        wanted = CIFAR_TEST if split == "test" else "data_batch_1 … data_batch_5"
        raise CodesignError(f"{path} has no {wanted}: give the cifar-10-batches-py folder of cifar-10-python.tar.gz")
    parts = [_cifar_batch(path / n) for n in names]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if split != "test":
        if len(labels) <= CIFAR_VAL:
            raise CodesignError(f"{path}: the training batches hold {len(labels)} images, but the last {CIFAR_VAL} "
                                f"form the val split: give all five data_batch files")
        chosen = slice(-CIFAR_VAL, None) if split == "val" else slice(None, -CIFAR_VAL)
        data, labels = data[chosen], labels[chosen]
    return (data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0), labels


# --- ImageFolder ------------------------------------------------------------------------------

def _path_and_size(argument: str) -> tuple[Path, int]:
    head, _, tail = argument.rpartition(":")
    if head and tail.isdigit():
        size = int(tail)
        if not 1 <= size <= 1024:
            raise CodesignError(f"imagefolder image size must be 1–1024 pixels, not {size}")
        return Path(head).expanduser(), size
    return Path(argument).expanduser(), IMAGEFOLDER_SIZE


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    return {d.name: sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            for d in classes}


def _hold_out(files: list[Path], share: float, seed: int) -> tuple[list[Path], list[Path]]:
    """A seeded ``share`` of ``files`` (rounded) and the rest, each in the original order."""
    order = np.random.default_rng(seed).permutation(len(files))
    cut = len(order) - int(round(share * len(order)))
    return [files[i] for i in sorted(order[:cut])], [files[i] for i in sorted(order[cut:])]


def _imagefolder_splits(path: Path) -> dict[str, dict[str, list[Path]]]:
    """Files of each class in each split (module docstring)."""
    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if (path / "train").is_dir() and test_dir is not None:
        rest = _class_files(path / "train")
        folders = {"test": test_dir, "val": path / "val" if test_dir.name == "test" else None}
        held = {split: _class_files(d) for split, d in folders.items() if d is not None and d.is_dir()}
        for split, files in held.items():
            if sorted(files) != sorted(rest):
                raise CodesignError(f"{path}: the class folders of train/ and {folders[split].name}/ differ")
    else:
        rest, held = {}, {"test": {}}
        for label, (name, files) in enumerate(_class_files(path).items()):
            rest[name], held["test"][name] = _hold_out(files, IMAGEFOLDER_TEST_SHARE, label)
    if "val" in held:
        return {"train": rest, **held}
    train: dict[str, list[Path]] = {}
    val: dict[str, list[Path]] = {}
    for label, (name, files) in enumerate(rest.items()):
        train[name], val[name] = _hold_out(files, IMAGEFOLDER_VAL_SHARE, label)
    return {"train": train, "val": val, **held}


def imagefolder(path: Path, split: str, size: int = IMAGEFOLDER_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``path/<class>/…`` (or ``path/{train,val,test}/<class>/…``) as described above."""
    if not path.is_dir():
        raise CodesignError(f"image folder not found: {path}")
    files = _imagefolder_splits(path)[split]
    classes = sorted(files)
    if len(classes) < 2:
        raise CodesignError(f"{path}: needs at least two class sub-folders with images, found {len(classes)}")
    chosen = [(f, label) for label, name in enumerate(classes) for f in files[name]]
    if not chosen:
        raise CodesignError(f"{path}: no images for the {split} split (extensions: {', '.join(sorted(IMAGE_SUFFIXES))})")
    images = np.stack([_read_image(f, size) for f, _ in chosen])
    return images, np.array([label for _, label in chosen], dtype=np.int64)


def _read_image(file: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image = image.convert("RGB")
            scale = size / min(image.size)
            width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            left, top = (width - size) // 2, (height - size) // 2
            image = image.crop((left, top, left + size, top + size))
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as exc:
        raise CodesignError(f"cannot read image {file}: {exc}") from None
    return array.transpose(2, 0, 1).copy()
