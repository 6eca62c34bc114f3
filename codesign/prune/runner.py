"""Running a method end to end: a dense model and a dataset in, a codesign checkpoint out.

:func:`train` makes a dense checkpoint from a zoo architecture; :func:`prune` turns a dense model
(checkpoint, state_dict with its architecture, or a zoo name trained first) into a pruned,
quantized checkpoint that ``codesign analyze``/``generate`` read directly. Both stop cleanly on
Ctrl-C, leaving ``<out>.resume.pt`` next to the output, and continue from it with ``resume=``.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from .. import __version__, zoo
from ..checkpoint import is_checkpoint, make_checkpoint, save_checkpoint
from ..device import main_replica
from ..errors import CodesignError
from ..mapping import Geometry
from . import stats
from .bitslice import Bitslice
from .core import Quantizer, find_targets
from .crimp import Crimp
from .dub import Dub
from .lgd import ColumnLgd, CrossbarLgd
from .magnitude import Magnitude
from .method import Method
from .tinyadc import TinyAdc
from .train import Data, Phase, Run, Schedule, Trainer

METHODS: dict[str, type[Method]] = {m.name: m for m in (Dub, TinyAdc, CrossbarLgd, ColumnLgd, Crimp, Bitslice,
                                                         Magnitude)}
DENSE = "dense"
DEFAULT_ARCH = {"digits": "digits_cnn"}


class DenseParams(BaseModel):
    """Dense training (``codesign train``)."""

    model_config = ConfigDict(extra="forbid")

    train: Schedule


def dense_defaults(data: str) -> dict[str, Any]:
    """Digits: Adam 3·10⁻³, cosine, 40 epochs, batch 64 (the bundled model's recipe); other data:
    SGD 0.1 momentum 0.9, weight decay 5·10⁻⁴, cosine, 200 epochs, batch 128 (the usual CIFAR recipe)."""
    if data == "digits":
        return {"train": {"epochs": 40, "lr": 3e-3, "optimizer": "adam", "decay": "cosine", "batch_size": 64}}
    return {"train": {"epochs": 200, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "decay": "cosine"}}


class Setup(BaseModel):
    """Everything that defines a run (saved in resumable checkpoints)."""

    model_config = ConfigDict(extra="forbid")

    method: str
    params: dict[str, Any]
    arch: str
    arch_kwargs: dict[str, Any]
    source: str
    data: str
    seed: int = 0
    rows: int = 128
    cols: int = 128
    cell_bits: int = 2
    dac_bits: int = 1
    weight_bits: int = 8
    input_bits: int = 8
    per_channel: bool = False

    def geometry(self) -> Geometry:
        try:
            return Geometry(rows=self.rows, cols=self.cols, cell_bits=self.cell_bits, dac_bits=self.dac_bits,
                            weight_bits=self.weight_bits, input_bits=self.input_bits)
        except ValueError as exc:
            raise CodesignError(f"crossbar: {exc}") from None


# --- hyperparameters --------------------------------------------------------------------------

def params_model(method: str) -> type[BaseModel]:
    if method == DENSE:
        return DenseParams
    if method not in METHODS:
        raise CodesignError(f"unknown method '{method}'; methods: {', '.join(METHODS)}")
    return METHODS[method].Params


def resolve_params(method: str, overrides: Optional[dict[str, Any]] = None, epochs: Optional[int] = None,
                   data: str = "digits") -> dict[str, Any]:
    """The method's hyperparameters: defaults, then ``overrides`` (nested dict), then ``epochs``
    for every training phase. Returns the validated values as a plain dict."""
    model = params_model(method)
    defaults = _validate(model, dense_defaults(data) if method == DENSE else {}).model_dump()
    values = merge_overrides(defaults, overrides or {})
    if epochs is not None:
        for name, field in model.model_fields.items():
            if field.annotation is Schedule:
                values[name]["epochs"] = epochs
    params = _validate(model, values)
    return params.model_dump()


def merge_overrides(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, nested dicts merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge_overrides(out[key], value) if nested else value
    return out


def _validate(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise CodesignError(f"hyperparameter '{where}': {err['msg']}") from None


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["finetune.epochs=5", "exclude=[\\"fc\\"]"]`` → nested dict (values are JSON, else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CodesignError(f"--set expects KEY=VALUE, not '{item}'")
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            value = text
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CodesignError(f"--set {item}: '{part}' was already set to a value, not a group")
        node[leaf] = value
    return out


def read_params_file(path: str | Path) -> dict[str, Any]:
    from ..files import read_json

    values = read_json(path, "give a JSON object of hyperparameters (see --show-hparams)")
    if not isinstance(values, dict):
        raise CodesignError(f"{path}: hyperparameters must be a JSON object")
    return values


# --- inputs -----------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def load_data(spec: str) -> Data:
    """The three splits of ``spec`` as tensors (cached: a dense run followed by pruning reads them once)."""
    from ..data import load_dataset

    x_train, y_train = load_dataset(spec, "train")
    x_test, y_test = load_dataset(spec, "test")
    x_val, y_val = load_dataset(spec, "val")
    return Data(*(torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test, x_val, y_val)),
                augment=spec != "digits")


def load_dense(source: str, arch: Optional[str] = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(architecture, its kwargs, state_dict) of a dense model file."""
    from ..ingest import read_model_file

    if not Path(source).is_file():
        raise CodesignError(f"model file not found: {source} (or give a zoo architecture: {', '.join(zoo.ARCHS)})")
    obj, fmt = read_model_file(source)
    if fmt == "checkpoint":
        if arch and arch != obj["arch"]["name"]:
            raise CodesignError(f"--arch {arch} contradicts the checkpoint's architecture '{obj['arch']['name']}'")
        state = dict(obj["state_dict"])
        for name, mask in (obj.get("masks") or {}).items():
            state[f"{name}.weight"] = state[f"{name}.weight"] * mask
        return obj["arch"]["name"], dict(obj["arch"].get("kwargs") or {}), state
    if fmt == "state_dict":
        if not arch:
            raise CodesignError(f"{source} is a plain state_dict: pass --arch NAME to say which architecture it "
                                f"belongs to ({', '.join(zoo.ARCHS)})")
        return arch, {}, obj
    raise CodesignError(f"{source} is a {fmt} file: pruning needs the architecture, so give a codesign "
                        f"checkpoint (codesign train) or a state_dict with --arch NAME")


def build_model(arch: str, kwargs: dict[str, Any], data: Data, state: Optional[dict[str, Any]] = None,
                shown: str = "") -> torch.nn.Module:
    """Instantiate ``arch`` and check that it fits the data (and ``state`` if given)."""
    shape = tuple(data.x_train.shape[1:])
    expected = zoo.get_arch(arch).input_shape
    if shape != expected:
        raise CodesignError(f"architecture '{arch}' takes {'×'.join(map(str, expected))} images but the data has "
                            f"{'×'.join(map(str, shape))}; pick a matching architecture or dataset")
    model = zoo.build(arch, kwargs)
    if state is not None:
        for key, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                bad = int((~torch.isfinite(value)).sum())
                raise CodesignError(f"{shown}: '{key}' has {bad} NaN or inf values; fix the model before pruning it")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CodesignError(f"{shown}: its weights do not fit architecture '{arch}': "
                                f"{str(exc).splitlines()[0][:200]}") from None
    with torch.no_grad():
        classes = model(data.x_test[:1]).shape[1]
    if classes < data.classes:
        raise CodesignError(f"the model has {classes} outputs but the data has {data.classes} classes")
    return model


def resume_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.resume{out.suffix or '.pt'}")


def read_resume(path: str | Path) -> tuple[Setup, dict[str, Any]]:
    """Setup and snapshot of a resumable checkpoint."""
    from ..ingest import read_model_file

    if not Path(path).is_file():
        raise CodesignError(f"resume file not found: {path}")
    obj, fmt = read_model_file(path)
    resume = obj.get("meta", {}).get("resume") if fmt == "checkpoint" and is_checkpoint(obj) else None
    if not isinstance(resume, dict):
        raise CodesignError(f"{path} is not a resumable checkpoint (Ctrl-C during codesign train/prune writes one)")
    setup = Setup.model_validate(resume["setup"])
    snapshot = {k: v for k, v in resume.items() if k != "setup"}
    snapshot.update(state_dict=obj["state_dict"], masks=obj["masks"])
    return setup, snapshot


def check_resume(setup: Setup, given: dict[str, Any]) -> None:
    """Explicit options must agree with the resumed run."""
    for key, value in given.items():
        if value is not None and value != getattr(setup, key):
            flag = "--" + key.replace("_", "-")
            raise CodesignError(f"{flag} {value} differs from the resumed run's {getattr(setup, key)}: drop it, "
                                f"or start a new run without --resume")


# --- running ----------------------------------------------------------------------------------

OnEpoch = Optional[Callable[[dict[str, Any]], None]]


def execute(setup: Setup, out: Path, snapshot: Optional[dict[str, Any]] = None,
            state: Optional[dict[str, Any]] = None, on_epoch: OnEpoch = None,
            threads: Optional[int] = None, device: str = "cpu") -> dict[str, Any]:
    """Run ``setup`` (dense training or a pruning method) and write the checkpoint to ``out``.

    ``state`` is the starting state_dict of a fresh run (random init if None); ``snapshot``
    continues an interrupted run instead; ``threads`` sets PyTorch's CPU threads while training
    (default: one for models under a million parameters); ``device``: cpu, cuda or auto (the
    checkpoint is written from the CPU either way). Under ``torchrun`` the processes are
    data-parallel replicas (:func:`codesign.device.replicas`); replica 0 writes the files.
    Returns the checkpoint written.
    """
    from ..device import data_to, replicas, resolve_device

    group, where = replicas(resolve_device(device))
    data = load_data(setup.data)
    torch.manual_seed(setup.seed)                      # the initialisation of a model trained from scratch
    model = build_model(setup.arch, setup.arch_kwargs, data, state, setup.source).to(where)
    group.follow_main(model)
    data = data_to(data, where)
    geometry = setup.geometry()
    dense = setup.method == DENSE
    targets = find_targets(model, geometry, setup.method)
    pow2 = not dense and METHODS[setup.method].pow2_scales
    run = Run(model, targets, Quantizer(setup.weight_bits, setup.per_channel, pow2), geometry, data, setup.seed)
    method: Optional[Method] = None
    if dense:
        phases = [Phase("train", DenseParams.model_validate(setup.params).train, quantize=False)]
    else:
        method = METHODS[setup.method](run, METHODS[setup.method].Params.model_validate(setup.params))
        phases = method.phases()
    before = snapshot["before"] if snapshot is not None else \
        {"float": run.accuracy(quantize=False), "quantized": run.accuracy(quantize=True)}

    def interrupted(snap: dict[str, Any]) -> None:
        if not group.main:
            return
        path = resume_path(out)
        meta = {"resume": {"setup": setup.model_dump(), "before": before,
                           **{k: snap[k] for k in ("position", "optimizer", "method", "history")}}}
        save_checkpoint(make_checkpoint(setup.arch, setup.arch_kwargs, snap["state_dict"],
                                        weight_bits=setup.weight_bits, input_bits=setup.input_bits,
                                        per_channel=setup.per_channel, masks=snap["masks"], meta=meta), path)
        command = "train" if dense else "prune"
        print(f"codesign: stopped; progress up to the last finished epoch is in {path}: continue with "
              f"'codesign {command} --resume {path} --out {out}'", file=sys.stderr)

    trainer = Trainer(run, phases, setup.method, method.state_dict if method else dict, interrupted, on_epoch,
                      threads, group)
    if snapshot is not None:
        trainer.restore(snapshot)
        if method:
            method.load_state_dict(snapshot["method"])
    elif method:
        method.prepare()
    trainer.train()
    run.model.cpu()
    run.masks = {name: mask.cpu() for name, mask in run.masks.items()}
    run.data = data_to(run.data, torch.device("cpu"))
    checkpoint = export(setup, run, method, before, trainer.history)
    if group.main:
        save_checkpoint(checkpoint, out)
    group.wait_for_main()
    return checkpoint


def export(setup: Setup, run: Run, method: Optional[Method], before: dict[str, float],
           history: list[dict[str, Any]]) -> dict[str, Any]:
    """The output checkpoint: weights on their integer grids, scales, masks, meta."""
    meta: dict[str, Any] = {"method": setup.method, "hyperparameters": setup.params, "dataset": setup.data,
                            "seed": setup.seed, "source": setup.source, "history": history,
                            "made_by": f"codesign {__version__}"}
    if method is None:
        meta["accuracy"] = {"float": run.accuracy(quantize=False), "quantized": run.accuracy(quantize=True)}
        return make_checkpoint(setup.arch, setup.arch_kwargs, run.model.state_dict(), weight_bits=setup.weight_bits,
                               input_bits=setup.input_bits, per_channel=setup.per_channel, meta=meta)
    pruned_float = run.accuracy(quantize=False)
    scales = {}
    with torch.no_grad():
        for t in run.targets:
            snapped, scales[t.name] = run.quantizer.snap(t.weight * run.masks[t.name])
            t.weight.copy_(snapped)
    mats = stats.integer_matrices(run.targets, run.quantizer, run.masks)
    meta.update({
        "crossbar": {"rows": setup.rows, "cols": setup.cols, "cell_bits": setup.cell_bits, "dac_bits": setup.dac_bits},
        "accuracy": {"dense_float": before["float"], "dense_quantized": before["quantized"],
                     # the weights now sit on their integer grids: the float model is the quantized one
                     "pruned_float": pruned_float, "pruned_quantized": run.accuracy(quantize=False)},
        "sparsity": stats.sparsity(mats), "slice_sparsity": stats.slice_sparsity(mats, run.geometry),
        "mean_adc_bits": stats.mean_adc_bits(mats, run.geometry),
        "tile_levels": stats.level_histogram(mats, run.geometry),
        **method.summary()})
    return make_checkpoint(setup.arch, setup.arch_kwargs, run.model.state_dict(), weight_bits=setup.weight_bits,
                           input_bits=setup.input_bits, per_channel=setup.per_channel, scales=scales,
                           masks=run.masks, meta=meta)


def train_dense(arch: str, data: str, out: Path, *, epochs: Optional[int] = None, seed: int = 0,
                overrides: Optional[dict[str, Any]] = None, weight_bits: int = 8, input_bits: int = 8,
                on_epoch: OnEpoch = None, threads: Optional[int] = None, device: str = "cpu") -> dict[str, Any]:
    """Train zoo architecture ``arch`` from random init on ``data``; write the dense checkpoint."""
    zoo.get_arch(arch)
    setup = Setup(method=DENSE, params=resolve_params(DENSE, overrides, epochs, data), arch=arch,
                  arch_kwargs={"num_classes": load_data(data).classes}, source=f"{arch} (random init)",
                  data=data, seed=seed, weight_bits=weight_bits, input_bits=input_bits)
    return execute(setup, out, on_epoch=on_epoch, threads=threads, device=device)


def prune(source: Optional[str], method: str, data: str, out: Path, *, arch: Optional[str] = None,
          epochs: Optional[int] = None, overrides: Optional[dict[str, Any]] = None, seed: int = 0,
          crossbar: Optional[dict[str, Any]] = None, on_epoch: OnEpoch = None,
          threads: Optional[int] = None, device: str = "cpu") -> dict[str, Any]:
    """Prune the dense model ``source`` with ``method``; write the pruned checkpoint to ``out``.

    ``source`` is a model file, a zoo name (trained dense first into ``<out>.dense.pt``, for
    ``epochs`` too if given) or None (the dataset's default architecture, trained first). ``crossbar`` holds any of rows, cols,
    cell_bits, dac_bits, weight_bits, input_bits, per_channel (defaults as ``codesign analyze``).
    """
    params = resolve_params(method, overrides, epochs)
    crossbar = {k: v for k, v in (crossbar or {}).items() if v is not None}
    source, dense_out = pretraining(source, data, out)
    if dense_out is not None:
        print(f"codesign: training {source} dense first (codesign train), into {dense_out}", file=sys.stderr)
        train_dense(source, data, dense_out, epochs=epochs, seed=seed, on_epoch=on_epoch, threads=threads,
                    device=device, **{k: crossbar[k] for k in ("weight_bits", "input_bits") if k in crossbar})
        source = str(dense_out)
    arch_name, kwargs, state = load_dense(source, arch)
    setup = Setup(method=method, params=params, arch=arch_name, arch_kwargs=kwargs, source=source, data=data,
                  seed=seed, **crossbar)
    return execute(setup, out, state=state, on_epoch=on_epoch, threads=threads, device=device)


def pretraining(source: Optional[str], data: str, out: Path) -> tuple[str, Optional[Path]]:
    """The model to prune and, when it is a zoo architecture to train dense first, the file that
    dense training writes (``<out>.dense.pt``). ``source=None`` means the dataset's default architecture."""
    if source is None:
        if data not in DEFAULT_ARCH:
            raise CodesignError(f"--model is required with --data {data}: a dense checkpoint or a zoo "
                                f"architecture ({', '.join(zoo.ARCHS)})")
        source = DEFAULT_ARCH[data]
    if source in zoo.ARCHS and not Path(source).is_file():
        return source, out.with_name(f"{out.stem}.dense{out.suffix or '.pt'}")
    return source, None


def resume(path: str | Path, out: Path, given: Optional[dict[str, Any]] = None,
           on_epoch: OnEpoch = None, threads: Optional[int] = None, device: str = "cpu") -> dict[str, Any]:
    """Continue the run saved in ``path``; ``given`` options must agree with it. When the run has
    finished and ``out`` is written, ``path`` is removed: what it held is now in ``out``."""
    setup, snapshot = read_resume(path)
    check_resume(setup, given or {})
    checkpoint = execute(setup, out, snapshot=snapshot, on_epoch=on_epoch, threads=threads,
                         device=device)
    if Path(path).resolve() != Path(out).resolve() and main_replica():
        Path(path).unlink(missing_ok=True)
        print(f"codesign: removed {path}: the run it saved has finished into {out}", file=sys.stderr)
    return checkpoint
