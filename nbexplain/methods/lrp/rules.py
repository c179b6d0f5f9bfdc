"""LRP rules: how relevance at one module's output becomes relevance at its input.

A rule is called in the backward pass as ``rule(op, inputs, relevance) -> relevances`` (one per
input). Linear rules (``Epsilon``, ``ZPlus``, ``AlphaBeta``, ``Gamma``, ``ZBox``, ``Flat``,
``WSquare``) get a ``LinearOp``: the module's affine map with its effective weight and bias
(BatchNorm folded in), callable as ``op(x, weight, bias)``. ``Norm`` gets any parameter-free
function of its inputs (pooling, the sum of a residual block); ``Pass`` hands relevance through.

Every linear rule has one shape: evaluate the layer on modified inputs and parameters
``(x_k, w_k, b_k)``, divide the upper relevance by a stabilized combination of those outputs, send
it back through the transposed maps, multiply by ``x_k``, and combine. Each computes what zennit
0.5.1's rule of the same name computes (the reference the tests compare against).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# (input, weight, bias) of one modified forward
Part = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z`` pushed away from zero by ``epsilon`` in the direction of its sign (zero counts as +)."""
    return z + torch.where(z >= 0, epsilon, -epsilon)


def contributions(
    op: Callable, parts: Sequence[Part], scale: Callable[[list[torch.Tensor]], list[torch.Tensor]]
) -> list[torch.Tensor]:
    """``x_k · J_kᵀ s_k`` for each part k, where ``J_k`` is the Jacobian of ``op(x_k, w_k, b_k)``
    with respect to ``x_k`` and ``s = scale(outputs)`` (the relevance divided by a denominator)."""
    leaves = [x.detach().requires_grad_(True) for x, _, _ in parts]
    outputs = [op(leaf, w, b) for leaf, (_, w, b) in zip(leaves, parts, strict=True)]
    grads = torch.autograd.grad(outputs, leaves, grad_outputs=scale(outputs))
    return [x * grad for (x, _, _), grad in zip(parts, grads, strict=True)]


class Rule:
    """Base class: ``rule(op, inputs, relevance)`` returns one relevance per input."""

    def __call__(self, op, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Pass(Rule):
    """Relevance goes through unchanged (activations; BatchNorm once folded into its conv)."""

    def __call__(self, op, inputs, relevance):
        return (relevance,)


class Norm(Rule):
    """R_i = x_i · ∂z/∂x_i · R / z for a parameter-free ``z = op(*inputs)`` (average pooling, sums)."""

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def __call__(self, op: Callable, inputs, relevance):
        leaves = [x.detach().requires_grad_(True) for x in inputs]
        z = op(*leaves)
        grads = torch.autograd.grad(z, leaves, grad_outputs=relevance / stabilize(z, self.stabilizer))
        return tuple(x * grad for x, grad in zip(inputs, grads, strict=True))


class Epsilon(Rule):
    """LRP-ε (Bach et al. 2015): R_i = x_i Σ_j w_ji R_j / (z_j + ε·sign z_j); ε = 0 is LRP-0."""

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = epsilon

    def __call__(self, op, inputs, relevance):
        (x,) = inputs
        (term,) = contributions(op, [(x, op.weight, op.bias)],
                                lambda z: [relevance / stabilize(z[0], self.epsilon)])
        return (term,)


class AlphaBeta(Rule):
    """LRP-αβ (Bach et al. 2015): positive contributions weighted by α, negative ones by β (α − β = 1).

    Contributions are split by the sign of x_i·w_ji, so negative inputs are allowed (as in zennit)."""

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6):
        if alpha < 0 or beta < 0 or abs(alpha - beta - 1) > 1e-9:
            raise ValueError(f"AlphaBeta needs alpha, beta >= 0 and alpha - beta == 1; got {alpha}, {beta}")
        self.alpha, self.beta, self.stabilizer = alpha, beta, stabilizer

    def __call__(self, op, inputs, relevance):
        (x,) = inputs
        w, b = op.weight, op.bias
        xp, xn, wp, wn = x.clamp(min=0), x.clamp(max=0), w.clamp(min=0), w.clamp(max=0)

        def scale(z):
            positive = relevance / stabilize(z[0] + z[1], self.stabilizer)
            negative = relevance / stabilize(z[2] + z[3], self.stabilizer)
            return [positive, positive, negative, negative]

        parts = [(xp, wp, b.clamp(min=0)), (xn, wn, None), (xp, wn, b.clamp(max=0)), (xn, wp, None)]
        t = contributions(op, parts, scale)
        return (self.alpha * (t[0] + t[1]) - self.beta * (t[2] + t[3]),)


class ZPlus(Rule):
    """LRP-z⁺ (Montavon et al. 2017): only positive contributions x_i·w_ji (α = 1, β = 0)."""

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def __call__(self, op, inputs, relevance):
        (x,) = inputs
        w, b = op.weight, op.bias

        def scale(z):
            return [relevance / stabilize(z[0] + z[1], self.stabilizer)] * 2

        parts = [(x.clamp(min=0), w.clamp(min=0), b.clamp(min=0)), (x.clamp(max=0), w.clamp(max=0), None)]
        t = contributions(op, parts, scale)
        return (t[0] + t[1],)


class Gamma(Rule):
    """Generalized LRP-γ (Montavon et al. 2019; Andéol et al. 2021): for a positive output, positive
    contributions boosted by γ; for a negative output, negative ones."""

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6):
        self.gamma, self.stabilizer = gamma, stabilizer

    def __call__(self, op, inputs, relevance):
        (x,) = inputs
        w, b, g = op.weight, op.bias, self.gamma
        up_w, down_w = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        z = op(x, w, b)

        def scale(outs):
            up = relevance * (z > 0) / stabilize(outs[0] + outs[1], self.stabilizer)
            down = relevance * (z < 0) / stabilize(outs[2] + outs[3], self.stabilizer)
            return [up, up, down, down]

        parts = [(xp, up_w, b + g * b.clamp(min=0)), (xn, down_w, None),
                 (xp, down_w, b + g * b.clamp(max=0)), (xn, up_w, None)]
        return (sum(contributions(op, parts, scale)),)


class ZBox(Rule):
    """LRP-z^B (Montavon et al. 2017) for the first layer, with inputs bounded by [low, high]
    (scalars or tensors broadcastable to the input, e.g. per channel ``(1, C, 1, 1)``)."""

    def __init__(self, low: float | torch.Tensor, high: float | torch.Tensor, stabilizer: float = 1e-6):
        self.low, self.high, self.stabilizer = low, high, stabilizer

    def __call__(self, op, inputs, relevance):
        (x,) = inputs
        w, b = op.weight, op.bias
        low = torch.as_tensor(self.low, dtype=x.dtype, device=x.device).expand_as(x)
        high = torch.as_tensor(self.high, dtype=x.dtype, device=x.device).expand_as(x)

        def scale(z):
            return [relevance / stabilize(z[0] - z[1] - z[2], self.stabilizer)] * 3

        parts = [(x, w, b), (low, w.clamp(min=0), b.clamp(min=0)), (high, w.clamp(max=0), b.clamp(max=0))]
        t = contributions(op, parts, scale)
        return (t[0] - t[1] - t[2],)


class Flat(Rule):
    """LRP-flat (Lapuschkin et al. 2019): relevance spread uniformly over each output's receptive field."""

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def __call__(self, op, inputs, relevance):
        (x,) = inputs
        parts = [(torch.ones_like(x), torch.ones_like(op.weight), None)]
        (term,) = contributions(op, parts, lambda z: [relevance / stabilize(z[0], self.stabilizer)])
        return (term,)


class WSquare(Rule):
    """LRP-w² (Montavon et al. 2017): relevance spread in proportion to the squared weights."""

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def __call__(self, op, inputs, relevance):
        (x,) = inputs
        parts = [(torch.ones_like(x), op.weight.square(), op.bias.square())]
        (term,) = contributions(op, parts, lambda z: [relevance / stabilize(z[0], self.stabilizer)])
        return (term,)
