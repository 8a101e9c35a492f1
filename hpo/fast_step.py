"""The training step as plain tensor ops with a hand-written backward.

Why not autograd + ``torch.optim.SGD``: at batch 64 an eager step is dominated by per-op
overhead (profiled: matmuls ~40%, ``SGD.step`` ~22%, BatchNorm ~10%). Written as one pure
function with no autograd, the whole step (forward, backward, BatchNorm statistics, momentum
update, metric accumulation) is a single graph that ``torch.compile`` fuses. The math is the
tutorial's exactly; ``tests/test_train.py`` checks it against ``nn.Module`` + autograd + SGD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from hpo.config import Precision
from hpo.model import BN_EPS, BN_MOMENTUM, Net

PARAM_KEYS = [
    f"{layer}.{name}"
    for layer in ("layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3")
    for name in ("weight", "bias")
]
STAT_KEYS = [f"layer{i}.1.running_{s}" for i in (1, 2) for s in ("mean", "var")]


@dataclass
class FlatState:
    """Parameters, momentum buffers and BatchNorm running statistics as plain tensors."""

    params: list[torch.Tensor]  # w1 b1 g1 be1 w2 b2 g2 be2 w3 b3
    bufs: list[torch.Tensor]
    running: list[torch.Tensor]  # mean1 var1 mean2 var2

    @classmethod
    def from_module(cls, net: Net, device: torch.device) -> FlatState:
        sd = net.state_dict()
        params = [sd[k].detach().to(device, copy=True) for k in PARAM_KEYS]
        running = [sd[k].detach().to(device, copy=True) for k in STAT_KEYS]
        return cls(params, [torch.zeros_like(p) for p in params], running)

    def load_into(self, net: Net) -> Net:
        """Copy the trained values back into ``net`` (for saving, evaluation, comparison)."""
        sd = net.state_dict()
        for key, value in zip(PARAM_KEYS + STAT_KEYS, self.params + self.running, strict=True):
            sd[key] = value.detach().to(sd[key].device, copy=True)
        net.load_state_dict(sd)
        return net


def _mm(a: torch.Tensor, b: torch.Tensor, precision: Precision) -> torch.Tensor:
    """``a @ b`` as fp32, computed in the precision: for bf16, bfloat16 operands, whose products
    oneDNN sums in fp32, and a bfloat16 result (rounded once, as under autocast). cuBLAS may
    round split-K partial sums to bfloat16 too (``allow_bf16_reduced_precision_reduction``)."""
    if precision == "fp32":
        return a @ b
    return (a.bfloat16() @ b.bfloat16()).float()


def _linear(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, precision: Precision
) -> torch.Tensor:
    # fp32 keeps addmm (bias fused into the GEMM), so its results are those it always had.
    if precision == "fp32":
        return torch.addmm(b, x, w.t())
    return _mm(x, w.t(), precision) + b


def _bn_forward(
    h: torch.Tensor, g: torch.Tensor, be: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-mode BatchNorm: (output, xhat, 1/std, batch mean, biased batch variance)."""
    mean = h.mean(0)
    centred = h - mean
    var = (centred * centred).mean(0)
    inv = torch.rsqrt(var + BN_EPS)
    xhat = centred * inv
    return xhat * g + be, xhat, inv, mean, var


def _bn_backward(
    dy: torch.Tensor, xhat: torch.Tensor, inv: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d input, d gamma, d beta) of ``_bn_forward``."""
    n = dy.shape[0]
    dbeta = dy.sum(0)
    dgamma = (dy * xhat).sum(0)
    dh = (g * inv / n) * (n * dy - dbeta - xhat * dgamma)
    return dh, dgamma, dbeta


def train_step(
    x: torch.Tensor,
    y: torch.Tensor,
    params: list[torch.Tensor],
    bufs: list[torch.Tensor],
    running: list[torch.Tensor],
    totals: torch.Tensor,
    lr: torch.Tensor,
    momentum: torch.Tensor,
    softmax_head: torch.Tensor,
    *,
    precision: Precision = "fp32",
) -> None:
    """One SGD-with-momentum step on batch ``(x, y)``, updating every tensor in place.

    ``totals`` accumulates [sum of batch losses, correct predictions, batches] on the device so
    the loop never syncs with the host; ``lr`` and ``momentum`` are 0-d tensors so that a new
    value does not recompile, and so is ``softmax_head`` (a 0-d bool): a study's baseline, with
    the tutorial's softmax head, and its other trials share one compiled step instead of
    compiling one each. ``precision`` is fixed per compiled step: it picks the hidden layers'
    matmul dtype (the output layer's stay fp32: 10 units, nothing to gain, and the logits keep
    their bits).
    """
    w1, b1, g1, be1, w2, b2, g2, be2, w3, b3 = params
    n = x.shape[0]
    h1 = _linear(x, w1, b1, precision)
    s1, xh1, inv1, mu1, var1 = _bn_forward(h1, g1, be1)
    a1 = torch.relu(s1)
    h2 = _linear(a1, w2, b2, precision)
    s2, xh2, inv2, mu2, var2 = _bn_forward(h2, g2, be2)
    a2 = torch.relu(s2)
    z = torch.addmm(b3, a2, w3.t())
    out = torch.where(softmax_head, torch.softmax(z, dim=1), z)
    logp = torch.log_softmax(out, dim=1)
    onehot = torch.nn.functional.one_hot(y, 10).to(z.dtype)
    loss = -(logp * onehot).sum() / n

    dout = (logp.exp() - onehot) / n
    # Through the tutorial's extra softmax: the softmax Jacobian applied to dout.
    dz = torch.where(softmax_head, out * (dout - (dout * out).sum(1, keepdim=True)), dout)
    dw3 = dz.t() @ a2
    db3 = dz.sum(0)
    ds2 = (dz @ w3) * (s2 > 0)
    dh2, dg2, dbe2 = _bn_backward(ds2, xh2, inv2, g2)
    dw2 = _mm(dh2.t(), a1, precision)
    db2 = dh2.sum(0)
    ds1 = _mm(dh2, w2, precision) * (s1 > 0)
    dh1, dg1, dbe1 = _bn_backward(ds1, xh1, inv1, g1)
    dw1 = _mm(dh1.t(), x, precision)
    db1 = dh1.sum(0)
    grads = [dw1, db1, dg1, dbe1, dw2, db2, dg2, dbe2, dw3, db3]

    # torch.optim.SGD's rule (dampening 0, no nesterov): buf = m * buf + g; p -= lr * buf.
    for p, b, g in zip(params, bufs, grads, strict=True):
        b.mul_(momentum).add_(g)
        p.sub_(lr * b)

    unbias = n / (n - 1)
    for stat, value in zip(running, (mu1, var1 * unbias, mu2, var2 * unbias), strict=True):
        stat.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * value)

    correct = (z.argmax(1) == y).sum()
    totals.add_(torch.stack([loss.detach(), correct.to(totals.dtype), totals.new_ones(())]))


class Step(Protocol):
    """A training step as ``fit`` calls it: ``gather_step`` eager, compiled by ``torch.compile``,
    or the ahead-of-time package (``hpo.aot_step.PackagedStep``)."""

    def __call__(
        self,
        x_all: torch.Tensor,
        y_all: torch.Tensor,
        idx: torch.Tensor,
        params: list[torch.Tensor],
        bufs: list[torch.Tensor],
        running: list[torch.Tensor],
        totals: torch.Tensor,
        lr: torch.Tensor,
        momentum: torch.Tensor,
        softmax_head: torch.Tensor,
        /,
    ) -> None: ...


def gather_step(
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    idx: torch.Tensor,
    *step: Any,
    precision: Precision = "fp32",
) -> None:
    """``train_step`` on the samples ``idx`` of the whole set ``(x_all, y_all)``: the form every
    compiled step takes (``torch.compile``'s and the ahead-of-time package), since the batch
    gather inside the graph saves two eager ops per step."""
    train_step(x_all[idx], y_all[idx], *step, precision=precision)  # step: params ... head


def predict_logits(
    x: torch.Tensor, params: list[torch.Tensor], running: list[torch.Tensor], softmax_head: bool
) -> torch.Tensor:
    """Eval-mode forward (running statistics): the output the loss sees. Always fp32, whatever
    the training precision: the weights are fp32, and an accuracy is that of the network anyone
    loading them computes (``Net``, the report's pictures)."""
    w1, b1, g1, be1, w2, b2, g2, be2, w3, b3 = params
    m1, v1, m2, v2 = running
    a1 = torch.relu((torch.addmm(b1, x, w1.t()) - m1) * torch.rsqrt(v1 + BN_EPS) * g1 + be1)
    a2 = torch.relu((torch.addmm(b2, a1, w2.t()) - m2) * torch.rsqrt(v2 + BN_EPS) * g2 + be2)
    z = torch.addmm(b3, a2, w3.t())
    return torch.softmax(z, dim=1) if softmax_head else z
