"""Datasets named on the command line with ``--data SPEC``.

``digits`` is scikit-learn's bundled 8×8 digits (real data, offline): float32 images
``[n, 1, 8, 8]`` scaled to 0–1 and int64 labels, split deterministically into 1437 training and
360 test images. :func:`load_dataset` parses a SPEC and returns ``(images, labels)`` as numpy arrays.
"""

from __future__ import annotations

import numpy as np

DIGITS_TEST = 360


def digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The ``train`` or ``test`` split of the 1797 digits (seeded permutation)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    chosen = order[-DIGITS_TEST:] if split == "test" else order[:-DIGITS_TEST]
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return images[chosen], labels[chosen]


def load_dataset(spec: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``split`` ('train' or 'test') of the dataset named by ``spec``."""
    from .errors import CodesignError

    name, _, _argument = spec.partition(":")
    if name == "digits":
        return digits(split)
    raise CodesignError(f"unknown dataset '{spec}': use 'digits'")
