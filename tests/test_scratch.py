"""cnnlab.scratch: every layer's forward and backward against torch autograd, in float64.

Shapes are drawn by hypothesis; "relative error" is max |a - b| / max(|a| + |b|, 1e-8), element
by element (the gradient-check measure of CS231n), and must stay under 1e-6.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.scratch import SGD, Conv2d, Flatten, Linear, MaxPool2d, ReLU, lenet5, softmax_cross_entropy

TOL = 1e-6
CHECKS = settings(max_examples=25, deadline=None)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return float((np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8)).max(initial=0.0))


def t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@st.composite
def conv_cases(draw):
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * padding), 9))
    w = draw(st.integers(max(1, k - 2 * padding), 9))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), f=draw(st.integers(1, 4)), k=k, stride=stride,
                padding=padding, h=h, w=w, seed=draw(st.integers(0, 2**31)))


@CHECKS
@given(conv_cases(), st.sampled_from(["loop", "im2col"]))
def test_conv2d_matches_torch(case, impl) -> None:
    rng = np.random.default_rng(case["seed"])
    layer = Conv2d(case["c"], case["f"], case["k"], case["stride"], case["padding"], impl=impl, rng=rng, dtype=np.float64)
    layer.params["bias"][...] = rng.standard_normal(case["f"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    out = layer.forward(x)
    xt, wt, bt = t(x), t(layer.params["weight"]), t(layer.params["bias"])
    ref = F.conv2d(xt, wt, bt, stride=case["stride"], padding=case["padding"])
    assert rel_err(out, ref.detach().numpy()) < TOL
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    ref.backward(torch.from_numpy(dout))
    assert rel_err(dx, xt.grad.numpy()) < TOL
    assert rel_err(layer.grads["weight"], wt.grad.numpy()) < TOL
    assert rel_err(layer.grads["bias"], bt.grad.numpy()) < TOL


@CHECKS
@given(conv_cases())
def test_loop_and_im2col_are_the_same_layer(case) -> None:
    loop, fast = (Conv2d(case["c"], case["f"], case["k"], case["stride"], case["padding"], impl=impl,
                         rng=np.random.default_rng(case["seed"]), dtype=np.float64) for impl in ("loop", "im2col"))
    assert np.array_equal(loop.params["weight"], fast.params["weight"])
    x = np.random.default_rng(case["seed"] + 1).standard_normal((case["n"], case["c"], case["h"], case["w"]))
    out = loop.forward(x)
    assert np.allclose(out, fast.forward(x), rtol=1e-12, atol=1e-12)
    dout = np.random.default_rng(case["seed"] + 2).standard_normal(out.shape)
    assert np.allclose(loop.backward(dout), fast.backward(dout), rtol=1e-12, atol=1e-12)
    for name in ("weight", "bias"):
        assert np.allclose(loop.grads[name], fast.grads[name], rtol=1e-12, atol=1e-12)


@CHECKS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2), st.integers(0, 5), st.integers(0, 5),
       st.integers(0, 2**31))
def test_maxpool_matches_torch(n, c, k, extra_stride, extra_h, extra_w, seed) -> None:
    stride = max(1, k - 1 + extra_stride)  # overlapping (stride < k), tiling and gapped windows
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, k + extra_h, k + extra_w))  # continuous values: no ties
    layer = MaxPool2d(k, stride)
    out = layer.forward(x)
    xt = t(x)
    ref = F.max_pool2d(xt, k, stride)
    assert rel_err(out, ref.detach().numpy()) < TOL
    dout = rng.standard_normal(out.shape)
    ref.backward(torch.from_numpy(dout))
    assert rel_err(layer.backward(dout), xt.grad.numpy()) < TOL


@CHECKS
@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 6), st.integers(0, 2**31))
def test_linear_relu_flatten_match_torch(n, fin, fout, seed) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 1, fin))
    flat, lin, relu = Flatten(), Linear(fin, fout, rng=rng, dtype=np.float64), ReLU()
    lin.params["bias"][...] = rng.standard_normal(fout)
    out = relu.forward(lin.forward(flat.forward(x)))
    xt, wt, bt = t(x), t(lin.params["weight"]), t(lin.params["bias"])
    ref = F.relu(F.linear(xt.flatten(1), wt, bt))
    assert rel_err(out, ref.detach().numpy()) < TOL
    dout = rng.standard_normal(out.shape)
    dx = flat.backward(lin.backward(relu.backward(dout)))
    ref.backward(torch.from_numpy(dout))
    assert dx.shape == x.shape
    assert rel_err(dx, xt.grad.numpy()) < TOL
    assert rel_err(lin.grads["weight"], wt.grad.numpy()) < TOL
    assert rel_err(lin.grads["bias"], bt.grad.numpy()) < TOL


@CHECKS
@given(st.integers(1, 6), st.integers(2, 10), st.floats(0.1, 30), st.integers(0, 2**31))
def test_softmax_cross_entropy_matches_torch(n, k, scale, seed) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)) * scale  # large scales test the max-subtraction
    y = rng.integers(0, k, n)
    loss, grad = softmax_cross_entropy(logits, y)
    lt = t(logits)
    ref = F.cross_entropy(lt, torch.from_numpy(y))
    ref.backward()
    assert rel_err(loss, ref.item()) < TOL
    assert rel_err(grad, lt.grad.numpy()) < TOL


def test_sgd_momentum_matches_torch() -> None:
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3, 4))
    g = np.zeros_like(p)
    pt = torch.tensor(p.copy(), requires_grad=True)
    ours = SGD([(p, g)], lr=0.1, momentum=0.9, weight_decay=0.01)
    ref = torch.optim.SGD([pt], lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(5):
        grad = rng.standard_normal(p.shape)
        g[...] = grad
        ours.step()
        pt.grad = torch.from_numpy(grad.copy())
        ref.step()
    assert rel_err(p, pt.detach().numpy()) < TOL


def test_lenet5_forward_and_backward_match_the_torch_model() -> None:
    """The whole scratch LeNet-5 against cnnlab's torch lenet5 with the same weights."""
    from cnnlab.models import build_model

    net = lenet5(dtype=np.float64, seed=3)
    assert net.num_parameters() == 61_706  # the torch model's count (LeCun et al. 1998, modern form)
    model = build_model("lenet5", (1, 28, 28), 10).double()
    torch_params = dict(model.named_parameters())
    for name, p, _ in net.parameters():
        layer, kind = name.split(".")
        part = "features" if layer.startswith("conv") else "classifier"
        with torch.no_grad():
            torch_params[f"net.{part}.{layer}.{kind}"].copy_(torch.from_numpy(p))
    rng = np.random.default_rng(4)
    x = rng.random((4, 1, 28, 28))
    y = rng.integers(0, 10, 4)
    loss, dlogits = softmax_cross_entropy(net.forward(x), y)
    dx = net.backward(dlogits)
    xt = t(x)
    ref = F.cross_entropy(model(xt), torch.from_numpy(y))
    ref.backward()
    assert rel_err(loss, ref.item()) < TOL
    assert rel_err(dx, xt.grad.numpy()) < TOL
    for name, _, grad in net.parameters():
        layer, kind = name.split(".")
        part = "features" if layer.startswith("conv") else "classifier"
        assert rel_err(grad, torch_params[f"net.{part}.{layer}.{kind}"].grad.numpy()) < TOL, name


@pytest.mark.slow
def test_scratch_train_reaches_95_percent_on_digits(cli) -> None:
    r = cli("scratch", "train", "--data", "digits", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["test_acc"] >= 0.95
    assert doc["parameters"] == 61_706 and len(doc["epochs"]) == 8
    assert doc["epochs"][-1]["train_loss"] < doc["epochs"][0]["train_loss"]


def test_scratch_train_errors_are_one_sentence(cli) -> None:
    r = cli("scratch", "train", "--impl", "fft")
    assert r.code == 1 and r.err.strip() == "error: --impl must be im2col or loop, got 'fft'."
    r = cli("scratch", "train", "--epochs", "0")
    assert r.code == 1 and "--epochs and --batch-size must be at least 1" in r.err
