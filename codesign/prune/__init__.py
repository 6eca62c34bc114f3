"""Crossbar-aware pruning and quantization: ``codesign prune`` and ``codesign train``.

Methods (one module each, sharing :mod:`.core` and the training loop of :mod:`.train`):
``dub`` (:mod:`.dub`), ``tinyadc`` (:mod:`.tinyadc`), ``crossbar`` and ``column`` (:mod:`.lgd`),
``crimp`` (:mod:`.crimp`), ``bitslice`` (:mod:`.bitslice`), ``magnitude`` (:mod:`.magnitude`).
Entry points: :func:`prune`, :func:`train_dense`, :func:`resume` (:mod:`.runner`).
"""

from .runner import METHODS, Setup, prune, resolve_params, resume, train_dense

__all__ = ["METHODS", "Setup", "prune", "resolve_params", "resume", "train_dense"]
