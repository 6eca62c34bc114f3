"""Tensors of any reader → checked numpy arrays: float weights, or integers with their scales.

Every value a model file holds passes through :func:`weight_array` before it is used, so a
crafted or unusual tensor (complex, sparse, meta, quantized, empty, absurdly large) is either read
exactly or refused with one line naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..errors import CodesignError

MAX_ELEMENTS = 1 << 28   #: Largest weight tensor read (268 M values, 2 GiB as float64): VGG-16's fc1 has 103 M.


@dataclass(frozen=True)
class ConvInfo:
    """Convolution geometry (known when the architecture is known)."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass
class Found:
    """One Conv2d or Linear weight as a reader found it.

    ``weight`` is ``[Cout, Cin/g, kh, kw]`` or ``[out, in]``: float64 values, or — when ``scale`` is
    given — exact integers ``n`` (int64) with ``w = n · scale[out]`` (a quantized model's weights).
    ``bias`` (float64 or None) and ``conv`` are what whole-model emulation of a graph needs.
    """

    name: str
    kind: str                          # "conv2d" or "linear"
    weight: np.ndarray
    conv: Optional[ConvInfo] = None
    scale: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None

    @property
    def integer(self) -> bool:
        return self.scale is not None


def check_size(shape: tuple[int, ...], what: str) -> int:
    """Number of elements of ``shape``, refused above :data:`MAX_ELEMENTS` before anything is allocated."""
    count = 1
    for n in shape:
        count *= int(n)
    if count > MAX_ELEMENTS:
        raise CodesignError(f"{what} claims {'×'.join(map(str, shape))} = {count:,} values, more than the "
                            f"{MAX_ELEMENTS:,} codesign reads: a crafted or expanded tensor? save tensor.contiguous() "
                            f"of a real weight")
    return count


def weight_array(value: Any, what: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``(values, scale)`` of a torch tensor or numpy array: float64 values and ``None``, or for a
    quantized tensor the exact integers ``int_repr() − zero_point`` (int64) and the scale per
    index of dimension 0 (float64). ``what`` names the tensor in errors."""
    if hasattr(value, "layout"):                 # a torch tensor
        return _torch_array(value, what)
    if not isinstance(value, np.ndarray):
        raise CodesignError(f"{what} is a {type(value).__name__}, not a tensor")
    return _checked(value, what), None


def _checked(array: np.ndarray, what: str) -> np.ndarray:
    check_size(array.shape, what)
    if np.iscomplexobj(array):
        raise CodesignError(f"{what} has complex values ({array.dtype}): crossbars hold real weights; "
                            f"map the real and imaginary parts as separate layers")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise CodesignError(f"{what} has {array.dtype} values, not numbers")
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        noun = "weights" if what.startswith("layer") else "values"
        raise CodesignError(f"{what} has {bad} NaN or inf {noun}; fix the model before mapping it")
    return array


def _torch_array(tensor: Any, what: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    import torch

    if tensor.is_meta or tensor.device.type == "meta":
        raise CodesignError(f"{what} is a meta tensor without data: save the model after its weights are loaded")
    if tensor.layout != torch.strided:
        check_size(tuple(tensor.shape), what)
        try:
            tensor = tensor.to_dense()
        except (RuntimeError, TypeError) as exc:
            raise CodesignError(f"{what}: cannot read its {tensor.layout} layout ({str(exc).splitlines()[0][:120]}); "
                                f"save weight.to_dense()") from None
    check_size(tuple(tensor.shape), what)
    tensor = tensor.detach().cpu()
    if tensor.is_complex():
        raise CodesignError(f"{what} has complex values ({tensor.dtype}): crossbars hold real weights; "
                            f"map the real and imaginary parts as separate layers")
    if tensor.is_quantized:
        return _quantized(tensor, what)
    try:
        array = tensor.to(torch.float64).numpy()
    except (RuntimeError, TypeError) as exc:
        raise CodesignError(f"{what} has {tensor.dtype} values that cannot be read as numbers "
                            f"({str(exc).splitlines()[0][:120]})") from None
    return _checked(array, what), None


def _quantized(tensor: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A torch quantized tensor: exact integers relative to the zero point and the scale per output."""
    import torch

    scheme = tensor.qscheme()
    q = tensor.int_repr().to(torch.int64).numpy()
    channels = q.shape[0] if q.ndim else 1
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        scale = np.full(channels, float(tensor.q_scale()))
        zero = np.full(channels, int(tensor.q_zero_point()), dtype=np.int64)
    elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric,
                    torch.per_channel_affine_float_qparams):
        if tensor.q_per_channel_axis() != 0:
            raise CodesignError(f"{what} is quantized per channel along axis {tensor.q_per_channel_axis()}; "
                                f"codesign needs one scale per output channel (axis 0)")
        scale = tensor.q_per_channel_scales().double().numpy()
        zero = tensor.q_per_channel_zero_points().double().numpy()
        if not np.array_equal(zero, np.rint(zero)):
            raise CodesignError(f"{what} has fractional zero points (float qparams): re-quantize it with "
                                f"integer zero points")
        zero = zero.astype(np.int64)
    else:
        raise CodesignError(f"{what} uses quantization scheme {scheme}, which codesign does not read")
    return integers(q, scale, zero, what)


def integers(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(q − zero, scale)`` checked: ``scale``/``zero`` hold one entry per output channel
    (``q.shape[0]``); scales positive and finite. A weight zero point ``z ≠ 0`` needs no offset
    term: the crossbar stores the signed integers ``q − z`` themselves (README, 'How a model is read')."""
    channels = q.shape[0] if q.ndim else 1
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    zero = np.asarray(zero).reshape(-1)
    if scale.size == 1:
        scale = np.full(channels, scale[0])
    if zero.size == 1:
        zero = np.full(channels, zero[0])
    if scale.shape != (channels,) or zero.shape != (channels,):
        raise CodesignError(f"{what}: {scale.size} scales and {zero.size} zero points for {channels} output "
                            f"channels; the quantization must be per tensor or per output channel")
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise CodesignError(f"{what}: its quantization scales must be positive and finite")
    shape = (channels,) + (1,) * (q.ndim - 1)
    return q.astype(np.int64) - zero.astype(np.int64).reshape(shape), scale


@dataclass(frozen=True)
class ActivationQuant:
    """A model's own quantization of a layer input: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @property
    def bits(self) -> int:
        """Unsigned bits the wordlines need for ``q − qmin`` (0 … qmax − qmin)."""
        return max(1, int(self.qmax - self.qmin).bit_length())


def dtype_range(dtype: Any) -> tuple[int, int]:
    """(qmin, qmax) of an integer activation type (torch or numpy dtype, or ONNX's name)."""
    if isinstance(dtype, int):   # a TorchScript ScalarType code
        dtype = {0: "uint8", 1: "int8", 12: "qint8", 13: "quint8", 14: "qint32"}.get(dtype, str(dtype))
    name = str(dtype).replace("torch.", "").lower()
    ranges = {"quint8": (0, 255), "uint8": (0, 255), "qint8": (-128, 127), "int8": (-128, 127),
              "quint4x2": (0, 15), "uint16": (0, 65535), "int16": (-32768, 32767), "qint32": None,
              "int32": None}
    found = ranges.get(name)
    if found is None:
        raise CodesignError(f"activations quantized as {name} are not supported (8- or 16-bit integers are)")
    return found
