"""Tracing through hooked subclasses instead of patching nn.Module, and the one-walk module index."""

from __future__ import annotations

import threading

import pytest
import timm
import torch
from torch import nn

import redistribute
from redistribute.tracing.hooked import base_type, hooked_class
from redistribute.tracing.index import index_modules

_ORIG_CALL = nn.Module.__call__
_ORIG_GETATTR = nn.Module.__getattr__


_SEEN: list[tuple[bool, bool]] = []


class _Spy(nn.Module):
    """Records, from inside its forward, whether nn.Module's two slots are fx's patches at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _SEEN.append((nn.Module.__call__ is _ORIG_CALL, nn.Module.__getattr__ is _ORIG_GETATTR))
        x = self.bn(self.conv(x)).relu()
        return self.head(x.mean((2, 3)))


def test_trace_never_patches_nn_module() -> None:
    _SEEN.clear()
    graph = redistribute.trace(_Spy(), (3, 16, 16))
    assert _SEEN == [(True, True)]  # fx's own trace shows (False, False) here
    assert len([g for g in graph.groups if g.fixed is None]) == 1  # conv+bn: the leaves were still intercepted
    assert nn.Module.__call__ is _ORIG_CALL and nn.Module.__getattr__ is _ORIG_GETATTR


def test_callers_modules_keep_their_classes() -> None:
    model = timm.create_model("test_resnet")
    before = [type(m) for m in model.modules()]
    redistribute.trace(model)
    assert [type(m) for m in model.modules()] == before
    assert not any("_redistribute_base" in t.__dict__ for t in before)


def test_hooked_class_is_a_transparent_subclass_outside_a_trace() -> None:
    sub = hooked_class(nn.Linear)
    assert sub is hooked_class(nn.Linear)  # cached
    assert sub is not None and issubclass(sub, nn.Linear) and sub.__name__ == "Linear"
    lin = nn.Linear(5, 3)
    x = torch.randn(2, 5)
    expected = lin(x)
    lin.__class__ = sub
    assert base_type(lin) is nn.Linear and isinstance(lin, nn.Linear)
    torch.testing.assert_close(lin(x), expected)
    assert lin.weight.shape == (3, 5)  # __getattr__ finds parameters as nn.Module does
    with pytest.raises(AttributeError):
        _ = lin.not_an_attribute


class _Refuses(nn.Module):
    """A container whose class cannot be subclassed: tracing must fall back to fx's own patching."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("no subclasses")

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.body = timm.create_model("test_resnet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_unsubclassable_module_falls_back_to_fx_patching() -> None:
    wrapped = _Refuses()
    assert hooked_class(_Refuses) is None
    plain = redistribute.trace(wrapped.body, (3, 64, 64))
    fallback = redistribute.trace(wrapped, (3, 64, 64))
    assert [g.width for g in fallback.groups] == [g.width for g in plain.groups]
    assert [g.fixed is None for g in fallback.groups] == [g.fixed is None for g in plain.groups]
    assert nn.Module.__call__ is _ORIG_CALL and nn.Module.__getattr__ is _ORIG_GETATTR


def test_hooks_are_inactive_in_other_threads() -> None:
    sub = hooked_class(nn.Conv2d)
    assert sub is not None
    conv = nn.Conv2d(3, 4, 3)
    conv.__class__ = sub
    x = torch.randn(1, 3, 8, 8)
    expected = nn.functional.conv2d(x, conv.weight, conv.bias)
    results: list[torch.Tensor] = []
    started, release = threading.Event(), threading.Event()

    class Slow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            started.set()
            release.wait(10)  # hold the trace open while the other thread calls the hooked conv
            return self.conv(x)

    tracer = threading.Thread(target=redistribute.trace, args=(Slow(), (3, 8, 8)))
    tracer.start()
    assert started.wait(10)
    with torch.no_grad():
        results.append(conv(x))
    release.set()
    tracer.join(10)
    torch.testing.assert_close(results[0], expected)


def test_module_index_matches_torch_walks() -> None:
    model = timm.create_model("test_vit")
    shared = nn.Linear(4, 4)
    model.extra_a, model.extra_b = shared, shared  # one module under two names
    model.tied = nn.Linear(4, 4)
    model.tied.weight = shared.weight  # one parameter in two modules
    idx = index_modules(model)
    assert idx.modules == dict(model.named_modules(remove_duplicate=False))
    assert idx.paths == {m: n for n, m in reversed(list(model.named_modules()))}
    assert idx.params == {id(p): n for n, p in reversed(list(model.named_parameters()))}
    assert idx.buffers == {id(b): n for n, b in reversed(list(model.named_buffers()))}
    assert idx.num_params == sum(p.numel() for p in model.parameters())


def test_module_doctests() -> None:
    import doctest

    from redistribute.surgery import handlers as _handlers
    from redistribute.tracing import clone as _clone
    from redistribute.tracing import hooked as _hooked
    from redistribute.tracing import index as _index
    from redistribute.tracing import input_size as _input_size

    for module in (_hooked, _index, _clone, _handlers, _input_size):
        result = doctest.testmod(module, verbose=False, report=False)
        assert result.attempted > 0 and result.failed == 0, module.__name__
