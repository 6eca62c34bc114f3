"""The training loop every method shares: phases of masked, quantization-aware SGD.

A method is a list of :class:`Phase` objects — an optimizer :class:`Schedule` plus hooks (a
regularizer added to the loss, something to do after each step, at each epoch's start or end, and
at the phase's end). :class:`Trainer` runs them with:

* straight-through fake quantization of every crossbar weight to the run's weight bits in the
  forward pass (``Phase.quantize``), masked weights re-zeroed after every optimizer step;
* a deterministic order: epoch ``e`` of phase ``p`` seeds the batch order and the global RNG
  (dropout, noise, probabilistic projections) from ``(seed, p, e)``; deterministic algorithms on CPU;
* progress bars on a terminal (:mod:`codesign.progress`), a log line per epoch (loss, test accuracy, sparsity, mean
  ADC bits) and a history kept in the output;
* a snapshot at every epoch boundary: Ctrl-C writes it as a resumable checkpoint;
* data-parallel replicas under ``torchrun`` (:class:`codesign.device.Replicas`): each trains on
  its share of every batch, gradients averaged before every step; replica 0 logs.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..device import Replicas
from ..mapping import Geometry
from . import stats
from .core import Quantizer, Target

EVAL_BATCH = 500


class Schedule(BaseModel):
    """Optimizer and learning-rate schedule of one training phase."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(ge=0, description="Passes over the training split.")
    lr: float = Field(gt=0, description="Initial learning rate.")
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by Adam).")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty on every parameter (the optimizer's).")
    batch_size: int = Field(128, ge=1)
    decay: Literal["step", "cosine"] = Field("step", description="Learning-rate decay.")
    milestones: list[float] = Field(
        default_factory=list,
        description="Step decay: the learning rate is multiplied by gamma at these fractions of the phase.")
    gamma: float = Field(0.1, gt=0, le=1)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based)."""
        if self.decay == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        passed = sum(1 for m in self.milestones if epoch >= round(m * self.epochs))
        return self.lr * self.gamma ** passed

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


@dataclass
class Phase:
    """One stage of a method; hooks may be ``None``."""

    name: str
    schedule: Schedule
    regularizer: Optional[Callable[[], Tensor]] = None
    after_step: Optional[Callable[[], None]] = None
    epoch_start: Optional[Callable[[int], None]] = None
    epoch_end: Optional[Callable[[int], None]] = None
    end: Optional[Callable[[], None]] = None
    quantize: bool = True


@dataclass
class Data:
    """Training, validation and test splits as tensors; ``augment`` adds CIFAR-style random crops and flips.

    Training fits on ``train``; the per-epoch log reports ``val``; the checkpoint's accuracies are on ``test``.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_val: Tensor
    y_val: Tensor
    augment: bool = False

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random 4-pixel-padded crop and horizontal flip per image (the usual CIFAR augmentation)."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dev = x.device  # the draws come from the CPU generator: the same crops on every device
    dy = torch.randint(0, 9, (n,), generator=generator).to(dev)
    dx = torch.randint(0, 9, (n,), generator=generator).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]
    out = padded[torch.arange(n, device=dev)[:, None, None, None],
                 torch.arange(x.shape[1], device=dev)[None, :, None, None], rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


@dataclass
class Run:
    """The model being trained and everything the phases act on."""

    model: nn.Module
    targets: list[Target]
    quantizer: Quantizer
    geometry: Geometry
    data: Data
    seed: int
    masks: dict[str, Tensor] = field(default_factory=dict)
    variation: float = 0.0   #: σ of multiplicative log-normal weight noise in training (0 = none)

    def __post_init__(self) -> None:
        for t in self.targets:
            self.masks.setdefault(t.name, torch.ones_like(t.weight, dtype=torch.bool))

    def weights(self, training: bool, quantize: bool) -> dict[str, Tensor]:
        """Crossbar weights as the forward pass uses them: masked, fake-quantized, perturbed."""
        out = {}
        for t in self.targets:
            w = t.weight * self.masks[t.name]
            if quantize:
                w = self.quantizer.fake(w)
            if training and self.variation:
                w = w * torch.exp(torch.randn_like(w) * self.variation)
            out[f"{t.name}.weight"] = w
        return out

    def forward(self, x: Tensor, training: bool, quantize: bool = True) -> Tensor:
        return torch.func.functional_call(self.model, self.weights(training, quantize), (x,))

    @torch.no_grad()
    def apply_masks(self) -> None:
        for t in self.targets:
            t.weight.mul_(self.masks[t.name])

    @torch.no_grad()
    def accuracy(self, quantize: bool = True, split: str = "test") -> float:
        """Accuracy in percent on the ``test`` (default) or ``val`` split."""
        self.model.eval()
        images, labels = (self.data.x_val, self.data.y_val) if split == "val" else (self.data.x_test, self.data.y_test)
        correct = 0
        for start in range(0, len(labels), EVAL_BATCH):
            x, y = images[start:start + EVAL_BATCH], labels[start:start + EVAL_BATCH]
            correct += int((self.forward(x, training=False, quantize=quantize).argmax(1) == y).sum())
        return 100.0 * correct / len(labels)

    def measure(self) -> dict[str, float]:
        """Sparsity and mean lossless ADC bits of the integer weights."""
        mats = stats.integer_matrices(self.targets, self.quantizer, self.masks)
        return {"sparsity": stats.sparsity(mats), "adc_bits": stats.mean_adc_bits(mats, self.geometry)}


def epoch_seed(seed: int, phase: int, epoch: int) -> int:
    return (seed * 1_000_003 + phase * 10_007 + epoch) % (2 ** 63)


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic algorithms and ``threads`` PyTorch CPU threads inside; restored after."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def default_threads(model: nn.Module) -> int:
    """One thread for a model under a million parameters (thread start-up costs more than it saves on
    such small layers, and the machine stays free for others), else PyTorch's default."""
    return 1 if sum(p.numel() for p in model.parameters()) < 1_000_000 else torch.get_num_threads()


@dataclass
class Position:
    """Where a run stands: the next epoch to train is ``epoch`` of phase ``phase``
    (``epoch == epochs`` means only the phase's ``end`` hook is left)."""

    phase: int = 0
    epoch: int = 0


class Trainer:
    """Runs phases on a :class:`Run`; see the module docstring.

    ``method_state`` carries a method's own tensors (e.g. ADMM variables) through snapshots.
    ``on_interrupt`` receives the last snapshot when Ctrl-C stops training. ``threads``: PyTorch
    CPU threads while training (default: :func:`default_threads`). ``replicas``: this process's
    place in data-parallel training (a single process by default).
    """

    def __init__(self, run: Run, phases: list[Phase], label: str,
                 method_state: Callable[[], dict[str, Any]] = dict,
                 on_interrupt: Optional[Callable[[dict[str, Any]], None]] = None,
                 on_epoch: Optional[Callable[[dict[str, Any]], None]] = None, threads: Optional[int] = None,
                 replicas: Replicas = Replicas()) -> None:
        self.run = run
        self.replicas = replicas
        self.threads = threads or default_threads(run.model)
        self.phases = phases
        self.label = label
        self.method_state = method_state
        self.on_interrupt = on_interrupt
        self.on_epoch = on_epoch
        self.position = Position()
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.history: list[dict[str, Any]] = []

    # --- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly from the current epoch boundary (copied)."""
        return copy.deepcopy({
            "position": {"phase": self.position.phase, "epoch": self.position.epoch},
            "state_dict": self.run.model.state_dict(),
            "masks": self.run.masks,
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "method": self.method_state(),
            "history": self.history,
        })

    def restore(self, snap: dict[str, Any]) -> None:
        """Load a snapshot (the method's own state is loaded by the caller)."""
        self.run.model.load_state_dict(snap["state_dict"])
        self.run.masks.update({k: v.bool() for k, v in snap["masks"].items()})
        self.position = Position(**snap["position"])
        self.history = list(snap["history"])
        if snap["optimizer"] is not None:
            self.optimizer = self._optimizer()
            self.optimizer.load_state_dict(snap["optimizer"])

    def _optimizer(self) -> torch.optim.Optimizer:
        schedule = self.phases[self.position.phase].schedule
        return schedule.make_optimizer([p for p in self.run.model.parameters() if p.requires_grad])

    # --- the loop -----------------------------------------------------------------------------

    def train(self) -> None:
        """Run from the current position to the end; Ctrl-C hands the last snapshot to ``on_interrupt``."""
        snap = self.snapshot()
        try:
            with deterministic(self.threads):
                while self.position.phase < len(self.phases):
                    phase = self.phases[self.position.phase]
                    if self.position.epoch < phase.schedule.epochs:
                        if self.optimizer is None:
                            self.optimizer = self._optimizer()
                        self._epoch(phase)
                        self.position.epoch += 1
                    else:
                        if phase.end:
                            phase.end()
                        self.run.apply_masks()
                        self.position = Position(self.position.phase + 1, 0)
                        self.optimizer = None
                    snap = self.snapshot()
        except KeyboardInterrupt:
            if self.on_interrupt:
                self.on_interrupt(snap)
            raise

    def _epoch(self, phase: Phase) -> None:
        from ..progress import progress, write

        p, e = self.position.phase, self.position.epoch
        seed = epoch_seed(self.run.seed, p, e)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        lr = phase.schedule.lr_at(e)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if phase.epoch_start:
            phase.epoch_start(e)
        data = self.run.data
        order = torch.randperm(len(data.y_train), generator=generator)
        size = phase.schedule.batch_size
        started = time.perf_counter()
        total_loss, seen, batches = 0.0, 0, range(0, len(order), size)
        replicas = self.replicas
        self.run.model.train()
        bar = progress(batches, f"{self.label} {phase.name} {e + 1}/{phase.schedule.epochs}", unit="batch",
                       summary=False, enabled=replicas.main)  # the epoch's log line below is the stage's line
        for start in bar:
            index = replicas.share(order[start:start + size])
            if not len(index):
                continue                    # a last batch too small to give every replica a sample
            x = data.x_train[index]
            if data.augment:
                x = augment(x, generator)
            loss = nn.functional.cross_entropy(self.run.forward(x, True, phase.quantize), data.y_train[index])
            if phase.regularizer:
                loss = loss + phase.regularizer()
            self.optimizer.zero_grad()
            loss.backward()
            replicas.average_gradients(self.run.model.parameters())
            self.optimizer.step()
            self.run.apply_masks()
            if phase.after_step:
                phase.after_step()
            value = loss.item()
            total_loss += value * len(index)
            seen += len(index)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        bar.close()
        replicas.follow_main(self.run.model)
        if phase.epoch_end:
            phase.epoch_end(e)
        record = {"phase": phase.name, "epoch": e + 1, "epochs": phase.schedule.epochs, "lr": lr,
                  "loss": total_loss / max(seen, 1), "val_accuracy": self.run.accuracy(phase.quantize, "val"),
                  **self.run.measure(), "seconds": time.perf_counter() - started}
        self.history.append(record)
        if replicas.main:
            write(format_record(self.label, record))
        if self.on_epoch:
            self.on_epoch(record)


def format_record(label: str, record: dict[str, Any]) -> str:
    """The per-epoch log line."""
    return (f"codesign: {label} {record['phase']} {record['epoch']}/{record['epochs']}  "
            f"loss {record['loss']:.4f}  val acc {record['val_accuracy']:.2f}%  sparsity {100 * record['sparsity']:.1f}%  "
            f"adc {record['adc_bits']:.2f} b  lr {record['lr']:.2g}  ({record['seconds']:.1f} s)")
