"""Where PyTorch runs: ``--device cpu|cuda|auto`` resolved to a :class:`torch.device`.

CUDA runs keep float32 exact (TF32 matmuls and convolutions off) so training and evaluation
compute the same arithmetic as on the CPU, and set the cuBLAS workspace that PyTorch's
deterministic algorithms need on CUDA.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Iterable, Optional

import torch

from .errors import CodesignError

if TYPE_CHECKING:
    from .ingest import ModelSpec
    from .prune.train import Data

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (a :class:`CodesignError` when no GPU is visible) or ``auto`` (cuda when available)."""
    if name not in DEVICES:
        raise CodesignError(f"--device {name!r} is not one of {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise CodesignError("--device cuda: PyTorch sees no CUDA GPU (torch.cuda.is_available() is False); "
                            "install a CUDA build of PyTorch on a machine with a GPU, or use --device cpu")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and available) else "cpu")
    if device.type == "cuda":
        exact_float32()
    return device


def exact_float32() -> None:
    """Full float32 precision on CUDA (no TF32) and the cuBLAS workspace deterministic mode requires."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def data_to(data: "Data", device: torch.device) -> "Data":
    """``data`` with every split's tensors on ``device`` (the same object when already there)."""
    if data.x_train.device == device:
        return data
    moved = {f.name: getattr(data, f.name).to(device) for f in dataclasses.fields(data)
             if isinstance(getattr(data, f.name), torch.Tensor)}
    return dataclasses.replace(data, **moved)


def model_to(model: "ModelSpec", device: torch.device) -> Optional[str]:
    """Move the model's architecture to ``device`` for emulation and calibration; a note when it stays
    on the CPU (a graph read from ONNX, QONNX, torch.export or torch.ao runs in a CPU-only interpreter,
    TorchScript is moved as a whole). The crossbar arithmetic itself is exact int64 NumPy on the CPU."""
    from .ingest.graph import LayerGraph

    if device.type == "cpu":
        return None
    module = model.graph_module()
    if not isinstance(module, torch.nn.Module):
        return None
    if isinstance(module, LayerGraph):
        return f"{model.info.path} is a {model.info.format.replace('_', ' ')} graph: it runs on the CPU"
    module.to(device)
    return None


@dataclasses.dataclass(frozen=True)
class Replicas:
    """Data-parallel training: this process is replica ``rank`` of ``world`` (``torchrun``).

    Every replica holds the whole model and trains on its share of every batch (:meth:`share`);
    after each backward pass the gradients are summed over the replicas
    with ``all_reduce`` and divided by ``world`` — what ``DistributedDataParallel`` does, done
    explicitly because training runs the model through ``torch.func.functional_call`` on masked,
    fake-quantized weights. Buffers (batch-norm statistics) follow replica 0 at each epoch's end.
    Only replica 0 prints and writes files. ``world == 1``: a single process, every method a no-op.
    """

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This replica's samples of the batch indices ``batch``: every ``world``-th, from equal shares
        (up to ``world − 1`` samples of a batch are left out), so every replica draws the same random
        numbers (dropout) and the weights' noise and projections stay identical on all of them."""
        return batch[:len(batch) - len(batch) % self.world][self.rank::self.world]

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over the replicas (one ``all_reduce`` of a flat buffer)."""
        if self.world == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def follow_main(self, module: torch.nn.Module) -> None:
        """Copy replica 0's parameters and buffers to every replica."""
        if self.world > 1:
            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    torch.distributed.broadcast(tensor, 0)

    def wait_for_main(self) -> None:
        """Barrier: every replica waits until replica 0 has written its files."""
        if self.world > 1:
            torch.distributed.barrier()


def main_replica() -> bool:
    """Whether this process prints and writes: replica 0 under ``torchrun``, or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


def replicas(device: torch.device) -> tuple[Replicas, torch.device]:
    """The replicas of this run and the device of this process. Under ``torchrun`` (``WORLD_SIZE``
    > 1 in the environment) this joins the process group, NCCL on CUDA (one GPU per process,
    ``cuda:LOCAL_RANK``) and Gloo on the CPU; otherwise a single replica on ``device``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Replicas(), device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Replicas(dist.get_rank(), dist.get_world_size()), device
