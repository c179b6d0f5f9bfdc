"""``ModelState``: everything an explanation must leave as it found it, and a check that it did.

Taken before a call and compared after: every module's hook dicts (forward, pre, backward,
with-kwargs, state-dict hooks) and its non-underscore attributes, the module tree and the
parameter objects, each parameter's ``.grad`` and ``requires_grad``, the state dict bit for
bit (BatchNorm running stats, ``num_batches_tracked``), train/eval mode per module, the
global module hooks, tensor hooks on parameters, grad mode, and the torch-function mode stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.modules.module as module_globals
from torch import nn

HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
    "_backward_hooks", "_backward_pre_hooks",
    "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)
GLOBAL_HOOKS = sorted(name for name in dir(module_globals) if name.startswith("_global_") and "hook" in name)


def _hooks(owner: Any, names) -> dict[str, list]:
    """(hook id, hook object) pairs of each hook dict: identity, not just equality."""
    result = {}
    for name in names:
        value = getattr(owner, name, None)
        if isinstance(value, dict):
            result[name] = [(key, id(hook)) for key, hook in value.items()]
        else:
            result[name] = value
    return result


def _attributes(module: nn.Module) -> dict[str, Any]:
    """Public attributes (``inplace``, ``training``, ``eps``…), by value when simple."""
    out = {}
    for key, value in vars(module).items():
        if key.startswith("_"):
            continue
        out[key] = value if isinstance(value, (bool, int, float, str, tuple, type(None))) else id(value)
    return out


@dataclass
class ModelState:
    modules: list[tuple[str, int, type]]
    hooks: dict[str, dict]
    attributes: dict[str, dict]
    parameters: list[tuple[str, int, bool]]
    grads: dict[str, torch.Tensor | None]
    tensor_hooks: dict[str, Any]
    state: dict[str, torch.Tensor]
    global_hooks: dict[str, Any]
    grad_enabled: bool
    function_modes: int

    @classmethod
    def take(cls, model: nn.Module) -> ModelState:
        named = list(model.named_modules())
        return cls(
            modules=[(name, id(module), type(module)) for name, module in named],
            hooks={name: {**_hooks(module, HOOK_DICTS), "full": module._is_full_backward_hook}
                   for name, module in named},
            attributes={name: _attributes(module) for name, module in named},
            parameters=[(name, id(p), p.requires_grad) for name, p in model.named_parameters()],
            grads={name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
            tensor_hooks={name: _hooks(p, ["_backward_hooks", "_post_accumulate_grad_hooks"])
                          for name, p in model.named_parameters()},
            state={key: value.detach().clone() for key, value in model.state_dict(keep_vars=True).items()},
            global_hooks=_hooks(module_globals, GLOBAL_HOOKS),
            grad_enabled=torch.is_grad_enabled(),
            function_modes=torch._C._len_torch_function_stack(),
        )

    def assert_same(self, model: nn.Module) -> None:
        after = ModelState.take(model)
        assert after.modules == self.modules, "the module tree changed"
        for name in self.hooks:
            assert after.hooks[name] == self.hooks[name], f"hooks of module {name!r} changed"
            assert after.attributes[name] == self.attributes[name], f"attributes of module {name!r} changed"
        assert after.parameters == self.parameters, "parameters replaced or requires_grad changed"
        for name, grad in self.grads.items():
            now = after.grads[name]
            if grad is None:
                assert now is None, f"{name}.grad was None and now is set"
            else:
                assert now is not None and torch.equal(now, grad), f"{name}.grad changed"
        assert after.tensor_hooks == self.tensor_hooks, "tensor hooks on parameters changed"
        assert list(after.state) == list(self.state), "state dict keys changed"
        for key, value in self.state.items():
            now = after.state[key]
            assert now.dtype == value.dtype and now.shape == value.shape, f"state {key!r} changed dtype/shape"
            assert torch.equal(now.view(-1).view(torch.uint8) if now.numel() else now,
                               value.view(-1).view(torch.uint8) if value.numel() else value), \
                f"state {key!r} changed (bitwise)"
        assert after.global_hooks == self.global_hooks, "global module hooks changed"
        assert after.grad_enabled == self.grad_enabled, "torch.is_grad_enabled() not restored"
        assert after.function_modes == self.function_modes, "a TorchFunctionMode was left active"
