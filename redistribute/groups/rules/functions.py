"""Rules for ``call_function`` and ``call_method`` nodes: how each function or tensor method maps channel spaces.

Rules are registered with the decorators of :mod:`redistribute.groups.rules.base` (dispatch on the function object
or the method name, never on substrings of names) and see the walker only through its protocol there.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

from ..spaces import Layout, const
from .base import Dims, Walker, function_rule, function_type_rule, method_rule, shape_of
from .modules import pixel_shuffle

# ---------------------------------------------------------------------------------------------------------------
# Functions and methods
# ---------------------------------------------------------------------------------------------------------------
_UNARY_FNS = [
    F.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.hardswish,
    F.hardsigmoid,
    F.sigmoid,
    F.tanh,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.mish,
    F.softplus,
    F.hardtanh,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.alpha_dropout,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.exp,
    torch.log,
    torch.sqrt,
    torch.rsqrt,
    torch.abs,
    torch.neg,
    torch.clamp,
    torch.clip,
    torch.square,
    torch.erf,
    operator.neg,
    operator.pos,
    torch.nn.functional.relu_,
    torch.sign,
]
_UNARY_METHODS = [
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "abs",
    "neg",
    "clamp",
    "clamp_",
    "clip",
    "square",
    "contiguous",
    "clone",
    "float",
    "half",
    "bfloat16",
    "double",
    "to",
    "type_as",
    "detach",
    "mul_scalar",
    "pow",
    "erf",
    "sign",
    "hardswish",
    "gelu",
    "requires_grad_",
]


def _unary(w: Walker, node: fx.Node) -> Dims:
    return w.keep_dims(node, node.args[0])


function_rule(*_UNARY_FNS)(_unary)
method_rule(*_UNARY_METHODS)(_unary)

_BINARY_FNS = [
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    operator.floordiv,
    operator.pow,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
    torch.where,
    torch.lerp,
    torch.addcmul,
]
_BINARY_METHODS = ["add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", "lerp", "addcmul"]


def _broadcast(w: Walker, node: fx.Node) -> Dims:
    return w.broadcast(node, [a for a in list(node.args) + list(node.kwargs.values()) if isinstance(a, fx.Node)])


function_rule(*_BINARY_FNS)(_broadcast)
method_rule(*_BINARY_METHODS, "expand_as")(_broadcast)


@function_rule(torch.cat, torch.concat, torch.concatenate)
def _cat(w: Walker, node: fx.Node) -> Dims:
    tensors = node.args[0] if node.args else node.kwargs["tensors"]
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    parts = [w.dims(t) for t in tensors]  # type: ignore[union-attr]
    ndim = len(parts[0])
    dim = int(dim) % ndim  # type: ignore[call-overload]
    out: list[Layout] = []
    for i in range(ndim):
        if i == dim:
            out.append(tuple(seg for p in parts for seg in p[i]))
        else:
            for p in parts[1:]:
                w.table.unify(parts[0][i], p[i], node.name)
            out.append(parts[0][i])
    return tuple(out)


@function_rule(torch.flatten)
@method_rule("flatten", "view", "reshape", "squeeze", "unsqueeze", "view_as", "reshape_as")
def _reshape(w: Walker, node: fx.Node) -> Dims:
    return w.reshape(node, node.args[0])


function_rule(torch.reshape, torch.squeeze, torch.unsqueeze)(_reshape)


@function_rule(torch.permute)
@method_rule("permute")
def _permute(w: Walker, node: fx.Node) -> Dims:
    x = w.dims(node.args[0])
    order = node.args[1] if isinstance(node.args[1], (tuple, list)) else node.args[1:]
    return tuple(x[int(d) % len(x)] for d in order)  # type: ignore[call-overload]


@function_rule(torch.transpose)
@method_rule("transpose")
def _transpose(w: Walker, node: fx.Node) -> Dims:
    x = list(w.dims(node.args[0]))
    a, b = int(node.args[1]) % len(x), int(node.args[2]) % len(x)  # type: ignore[call-overload]
    x[a], x[b] = x[b], x[a]
    return tuple(x)


def _reduce(w: Walker, node: fx.Node) -> Dims:
    x = w.dims(node.args[0])
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    keep = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
    if dim is None:
        w.table.fix(tuple(s for lay in x for s in lay), f"full reduction at {node.name}")
        return tuple(const(s) for s in shape_of(node))
    dims = {int(d) % len(x) for d in (dim if isinstance(dim, (tuple, list)) else [dim])}  # type: ignore[call-overload]
    for d in dims:
        w.mark_cross_channel(x[d], node)
    out = []
    for i, lay in enumerate(x):
        if i in dims:
            if keep:
                out.append(const(1))
        else:
            out.append(lay)
    return tuple(out)


function_rule(torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.logsumexp)(_reduce)
method_rule("mean", "sum", "amax", "amin", "std", "var", "logsumexp")(_reduce)


@function_rule(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.normalize)
@method_rule("softmax", "log_softmax")
def _softmax(w: Walker, node: fx.Node) -> Dims:
    """Softmax and ``F.normalize`` keep their input's dims and mix the values along ``dim`` (for ``normalize``
    the channels, dim 1, by default)."""
    x = w.dims(node.args[0])
    out = w.keep_dims(node, node.args[0])
    if not isinstance(x, tuple):
        return out
    dim = node.kwargs.get("dim")
    if dim is None:
        pos = 2 if node.target is F.normalize else 1  # softmax(input, dim); normalize(input, p, dim)
        dim = node.args[pos] if len(node.args) > pos else (1 if node.target is F.normalize else None)
    if isinstance(dim, int):
        w.mark_cross_channel(x[dim % len(x)], node)
    else:  # softmax's legacy implicit dim: assume the worst
        for lay in x:
            w.mark_cross_channel(lay, node)
    return out


_SPATIAL_FNS = [
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.interpolate,
    F.upsample,
    F.pad,
    torch.nn.functional.lp_pool2d,
]


@function_rule(*_SPATIAL_FNS)
def _spatial(w: Walker, node: fx.Node) -> Dims:
    return w.keep_dims(node, node.args[0])


@function_rule(operator.getitem)
def _getitem(w: Walker, node: fx.Node) -> Dims:
    src, idx = node.args[0], node.args[1]
    src_dims = w.dims(src) if isinstance(src, fx.Node) else None
    if isinstance(src_dims, list):  # a tuple of tensors (split, chunk, unbind)
        return src_dims[int(idx)]  # type: ignore[call-overload]
    if src_dims is None or not isinstance(node.meta.get("val"), torch.Tensor):
        return None
    return w.index(node, src_dims, idx)


@function_rule(getattr)
@method_rule("size", "dim", "numel", "type", "data_ptr", "is_contiguous")
def _non_tensor(w: Walker, node: fx.Node) -> Dims:
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):  # tensor attributes such as x.T or x.mT are not mapped
        return w.unknown(node)
    return None


@function_rule(torch.split, torch.chunk, torch.unbind, torch.tensor_split)
@method_rule("split", "chunk", "unbind", "tensor_split")
def _split(w: Walker, node: fx.Node) -> Dims:
    x = w.dims(node.args[0])
    vals = node.meta["val"]
    dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
    name = str(getattr(node.target, "__name__", node.target))
    if name == "unbind":
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    dim = int(dim) % len(x)  # type: ignore[call-overload]
    sizes = [v.shape[dim] if v.ndim == len(x) else 1 for v in vals]
    sections = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size_or_sections")
    equal = len(set(sizes)) == 1
    shares = name == "chunk" or (isinstance(sections, fx.Node) and equal)  # equal shares of the tensor's own size
    resolved = w.table.resolve(x[dim])
    if shares and equal and len(sizes) > 1 and len(resolved) == 1 and resolved[0].space is not None:
        # one group cut in equal shares (a gated MLP's chunk(2)): the group becomes copies of one share
        part = w.table.fresh(sizes[0], f"{node.name}.share")
        if resolved[0].repeat == 1:
            w.table.unify(w.table.atom(resolved[0].space), part * len(sizes), node.name)
        else:
            w.table.fix(x[dim], f"split at '{node.name}' cuts through interleaved channels")
        parts = [part] * len(sizes)
    else:
        parts = w.split_layout(node, x[dim], sizes)
    if name != "unbind" and sum(seg.space is not None for seg in resolved) > 1:
        # parts of a concatenation: chunk keeps them equal; literal split sizes keep them as they are
        if shares:
            for part in parts[1:]:
                w.tie(part, parts[0], 1, 1, f"chunk at '{node.name}'")
        else:
            w.table.fix(x[dim], f"split at '{node.name}' has sizes that do not follow the parts")
    out = []
    for v, part in zip(vals, parts, strict=False):
        if v.ndim == len(x):
            out.append(tuple(part if i == dim else lay for i, lay in enumerate(x)))
        else:
            out.append(tuple(lay for i, lay in enumerate(x) if i != dim))
    return out


@function_type_rule(torch.jit.ScriptFunction)
def _script_function(w: Walker, node: fx.Node) -> Dims:
    """A TorchScript function: fx cannot look inside, so it is a black box (its channels are fixed, named)."""
    name = getattr(node.target, "name", None) or getattr(node.target, "__name__", "?")
    return w.unknown(node, f"'{name}' is a TorchScript function (torch.jit.script): a black box")


@function_rule(F.pixel_shuffle, torch.pixel_shuffle, F.pixel_unshuffle, torch.pixel_unshuffle)
def _functional_pixel_shuffle(w: Walker, node: fx.Node) -> Dims:
    factor = node.args[1] if len(node.args) > 1 else next(iter(node.kwargs.values()), None)
    if not isinstance(factor, int):
        return w.unknown(node)
    return pixel_shuffle(w, node, factor, unshuffle=node.target in (F.pixel_unshuffle, torch.pixel_unshuffle))


@function_rule(F.layer_norm, F.group_norm, F.batch_norm, F.instance_norm, F.rms_norm)
def _functional_norm(w: Walker, node: fx.Node) -> Dims:
    x = w.dims(node.args[0])
    shape_arg = node.args[1] if len(node.args) > 1 else None
    d = 1 if node.target in (F.batch_norm, F.group_norm, F.instance_norm) else len(x) - 1
    if (
        node.target in (F.layer_norm, F.rms_norm)
        and isinstance(shape_arg, (tuple, list))
        and any(isinstance(s, int) for s in shape_arg)
    ):
        w.table.fix(x[d], f"hard-coded normalized_shape at {node.name}")
    groups = node.args[1] if node.target is F.group_norm and len(node.args) > 1 else node.kwargs.get("num_groups")
    if node.target in (F.layer_norm, F.rms_norm) or (
        node.target is F.group_norm and groups != shape_of(node)[1]
    ):  # statistics across channels (a GroupNorm with one channel per group is per channel)
        w.mark_cross_channel(x[d], node)
    tensors = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if isinstance(a, fx.Node)]
    for t in tensors:
        td = w.dims(t)
        if isinstance(td, tuple) and len(td) == 1:
            w.table.unify(td[0], x[d], node.name)
    return x


@function_rule(F.prelu, torch.prelu)
def _functional_prelu(w: Walker, node: fx.Node) -> Dims:
    """``F.prelu(x, weight)``: a weight of C slopes follows the channels of dim 1; a single slope passes through."""
    x = w.dims(node.args[0])
    weight = w.dims(node.args[1]) if len(node.args) > 1 else w.dims(node.kwargs.get("weight"))
    if not isinstance(x, tuple) or not isinstance(weight, tuple) or len(weight) != 1:
        return w.unknown(node)
    if sum(s.size for s in weight[0]) > 1:
        w.table.unify(weight[0], x[1 if len(x) > 1 else 0], node.name)
    return x


@function_rule(F.linear)
def _functional_linear(w: Walker, node: fx.Node) -> Dims:
    x = w.dims(node.args[0] if node.args else node.kwargs["input"])
    weight_arg = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    weight = w.dims(weight_arg)
    if not isinstance(x, tuple) or not isinstance(weight, tuple) or len(weight) != 2:
        return w.unknown(node, f"F.linear at '{node.name}' with a weight the tracer cannot map")
    w.table.unify(x[-1], weight[1], node.name)
    bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
    if isinstance(bias, fx.Node):
        w.table.unify(w.dims(bias)[0], weight[0], node.name)
    w.flops_linear(node, x[-1], weight[0])
    return (*tuple(x[:-1]), weight[0])
