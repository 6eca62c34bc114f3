"""Input feature-map reorder (Liang et al.): sort a layer's input channels by importance.

Permuting a layer's input channels is exact when the same permutation is applied to the output
channels of the layer that produces them (and to the batch norms between): the model computes the
same function, but channels of similar importance — the L2 norm of their weights in the consuming
layer — now share row blocks, so group pruning removes less. The model's graph (torch.fx) must show
a private chain from the producer: a Conv2d/Linear, then only channel-wise modules (activations,
batch norm, pooling, dropout, flatten), used by nothing else. A layer fed by the model's input is
left as it is; any other layer without such a chain (a residual connection, a grouped convolution,
a reshape) is refused with its name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CodesignError
from .core import Target

CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh,
               nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity)
CHANNELWISE_FUNCTIONS = {torch.relu, nn.functional.relu, nn.functional.max_pool2d, nn.functional.avg_pool2d,
                         nn.functional.adaptive_avg_pool2d, nn.functional.dropout}
FLATTEN_FUNCTIONS = {torch.flatten}


class _Refused(Exception):
    pass


def _chain(model: nn.Module, node: Any) -> tuple[nn.Module, list[nn.Module], bool] | None:
    """(producer, batch norms on the way, flattened?) for the input of ``node``; None for the model input."""
    norms: list[nn.Module] = []
    flattened = False
    arg = node.args[0]
    while True:
        if arg.op == "placeholder":
            return None
        if len(arg.users) != 1:
            raise _Refused("its input is also used elsewhere (a residual connection?)")
        if arg.op == "call_module":
            module = model.get_submodule(arg.target)
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if getattr(module, "groups", 1) != 1:
                    raise _Refused(f"its producer '{arg.target}' is a grouped convolution")
                return module, norms, flattened
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                norms.append(module)
            elif isinstance(module, nn.Flatten):
                flattened = True
            elif not isinstance(module, CHANNELWISE):
                raise _Refused(f"its input passes through '{arg.target}' ({type(module).__name__})")
        elif arg.op == "call_function" and arg.target in CHANNELWISE_FUNCTIONS:
            pass
        elif (arg.op == "call_function" and arg.target in FLATTEN_FUNCTIONS) or \
                (arg.op == "call_method" and arg.target == "flatten"):
            flattened = True
        elif arg.op == "call_method" and arg.target in ("relu", "relu_"):
            pass
        else:
            raise _Refused(f"its input passes through {arg.op} '{getattr(arg.target, '__name__', arg.target)}'")
        arg = arg.args[0]


@torch.no_grad()
def _permute(consumer: Target, producer: nn.Module, norms: list[nn.Module]) -> list[int]:
    """Sort the consumer's input channels by importance; apply the order to both sides."""
    w = consumer.weight
    per_channel = w.reshape(w.shape[0], producer.weight.shape[0], -1)    # [out, channels, kh·kw or H·W]
    order = torch.argsort(per_channel.pow(2).sum((0, 2)), descending=True, stable=True)
    w.copy_(per_channel[:, order].reshape(w.shape))
    tensors: list[Tensor | None] = [producer.weight, producer.bias]
    for norm in norms:
        tensors += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
    for tensor in tensors:
        if tensor is not None:
            tensor.copy_(tensor[order])
    return order.tolist()


def reorder_inputs(model: nn.Module, targets: list[Target], method: str) -> dict[str, list[int]]:
    """Reorder the input channels of every target that has a producer; returns the orders applied
    (``order[i]`` = the old index of new channel ``i``)."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any tracing failure means no graph to reason about
        raise CodesignError(f"method '{method}': reorder needs a traceable model (torch.fx failed: "
                            f"{str(exc).splitlines()[0][:120]}); set reorder=false") from None
    nodes = {n.target: n for n in graph.nodes if n.op == "call_module"}
    orders = {}
    for target in targets:
        node = nodes.get(target.name)
        try:
            if node is None:
                raise _Refused("it is not called as a module in forward()")
            found = _chain(model, node)
            if found is None:
                continue
            producer, norms, flattened = found
            features, channels = target.weight.shape[1], producer.weight.shape[0]
            if target.groups != 1:
                raise _Refused("it is a grouped convolution")
            if (features % channels if flattened else features != channels):
                raise _Refused(f"its {features} inputs do not match the {channels} outputs of its producer")
        except _Refused as why:
            raise CodesignError(f"method '{method}' cannot reorder the input channels of layer '{target.name}': "
                                f"{why}; set reorder=false") from None
        orders[target.name] = _permute(target, producer, norms)
    return orders

