"""The analyses on every registered model that takes a small colour image: the layer summary
and the feature maps on all of them, attributions and PGD on those that classify (both ask
about a class per image). The registry drives them, as in timm's test_models.py.

A model joins by registering. Each takes the smallest colour image its builder accepts among
SIDES (the rule `input_for`); a model that takes none is left out only when NOT_TAKEN says
so with the reason, so none drops out unseen.
"""

from __future__ import annotations

import functools
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain import METHODS, attribute
from cnnlab.inside.pictures import feature_maps
from cnnlab.models import build_model, count_parameters, eval_mode, model_entries
from cnnlab.models.registry import ModelEntry
from cnnlab.perturb.pgd import pgd
from cnnlab.summary import summarize

# 12: the side LeNet-5 needs, and small enough for ResNet-50 to stay quick on a CPU; 32 for
# the detectors (ssd needs 32, yolo 16). 5 classes: not the 10 or 1,000 a layer might assume.
SIDES, CLASSES = (12, 32), 5
# model name -> why it takes none of SIDES
NOT_TAKEN: dict[str, str] = {name: "takes clips (T, C, H, W), not images" for name in
                             ("frame-cnn", "two-stream", "c3d", "r3d_18", "r2plus1d_18")}
# model name -> its layers (by name prefix) that run once per joint of each image, on a crop around it
PER_JOINT = {"deeppose": "net.refiners."}


def input_for(entry: ModelEntry) -> tuple[int, int, int] | None:
    """The rule: (3, side, side) for the smallest of SIDES the builder accepts, else None."""
    for side in SIDES:
        try:
            with torch.device("meta"):
                build_model(entry.name, (3, side, side), CLASSES)
        except CnnlabError:
            continue
        return (3, side, side)
    return None


INPUTS = {e.name: shape for e in model_entries() if (shape := input_for(e)) is not None}
MODELS = list(INPUTS)
CLASSIFIERS = [e.name for e in model_entries() if e.name in INPUTS and "classify" in e.tasks]


@functools.cache
def _model(name: str) -> nn.Module:
    """One model per name for the whole file, in train mode: every test checks it leaves the
    model as it found it (weights, BatchNorm statistics, mode, hooks, gradients).

    BatchNorm keeps the statistics of a batch of images, as training would leave them: with
    the initial ones (mean 0, variance 1) ResNet-56's activations grow through its 27 blocks
    until, in eval mode, its logits are so far apart that the loss and its gradient are 0.
    """
    torch.manual_seed(0)
    model = build_model(name, INPUTS[name], CLASSES)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None  # a plain average over the batches seen
    with torch.no_grad():
        model(_images(name, 8))
    for m in norms:
        m.momentum = 0.1
    return model


def _images(name: str, n: int = 2) -> torch.Tensor:
    """n images (n, C, H, W) in [0, 1] of model `name`'s input."""
    return torch.rand(n, *INPUTS[name], generator=torch.Generator().manual_seed(1))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _left_alone(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return (
        model.training
        and all(torch.equal(state[k], v) for k, v in before.items())
        and all(p.grad is None for p in model.parameters())
        and not any(m._forward_hooks for m in model.modules())
    )


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _last_conv_maps(model: nn.Module) -> nn.Module:
    """The layer whose output Grad-CAM's maps are: the last convolution, or the in-place ReLU
    defined right after it, which rectifies the convolution's output tensor in place (then the
    maps are the rectified ones, as the Grad-CAM paper takes them in VGG)."""
    modules = list(model.modules())
    i = max(k for k, m in enumerate(modules) if isinstance(m, nn.Conv2d))
    after = modules[i + 1] if i + 1 < len(modules) else None
    return after if isinstance(after, nn.ReLU) and after.inplace else modules[i]


def test_the_rule_leaves_out_only_the_models_written_down() -> None:
    assert {e.name for e in model_entries()} - set(MODELS) == set(NOT_TAKEN)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few integration steps and a few large occlusion patches: the methods' arithmetic is
    model-independent; what each model adds is its forward and backward pass."""
    module = importlib.import_module("cnnlab.explain.attribute")  # the module, not the function it exports
    monkeypatch.setattr(module, "IG_STEPS", 4)
    monkeypatch.setattr(module, "occlusion_window", lambda h, w: (h // 2, w // 2))  # 4 patches


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_attribute(name: str, method: str, quick: None) -> None:
    model, x = _model(name), _images(name)
    before = _state(model)
    if method == "gradcam" and not _has_conv(model):
        with pytest.raises(CnnlabError, match="has no convolution layer to explain"):
            attribute(model, x, 1, method)
        return
    a = attribute(model, x, 1, method)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert _left_alone(model, before)
    if method == "saliency":  # |d y_1 / d x| of the model as it predicts
        with eval_mode(model):
            xg = x.clone().requires_grad_()
            (grad,) = torch.autograd.grad(model(xg)[:, 1].sum(), xg)
        torch.testing.assert_close(a, grad.abs())
    elif method == "gradcam":  # Captum's Grad-CAM on the last convolution, upsampled
        from captum.attr import LayerAttribution, LayerGradCam

        layer = _last_conv_maps(model)
        with eval_mode(model):
            cam = LayerGradCam(model, layer).attribute(x, target=1, relu_attributions=True).detach()
        torch.testing.assert_close(a[:, :1], LayerAttribution.interpolate(cam, INPUTS[name][1:], "bilinear"))
    else:
        assert a.abs().sum() > 0


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_pgd(name: str) -> None:
    # Small enough that the loss is close to linear within the ball, even for an untrained
    # ResNet-50 whose loss on these images already moves by 0.2 at a sign step of 1e-4: there
    # a step of 8/255 overshoots the rise and PGD can end lower than it started.
    model, x, eps = _model(name), _images(name), 1e-3
    before = _state(model)
    torch.manual_seed(0)  # the random start
    with eval_mode(model):
        y = model(x).argmax(1)
        x_adv = pgd(model, x, y, eps, steps=3)
        loss = F.cross_entropy(model(x), y, reduction="none")
        loss_adv = F.cross_entropy(model(x_adv), y, reduction="none")
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (loss_adv > loss).all(), (loss, loss_adv)  # each image's loss climbed
    assert _left_alone(model, before)


@pytest.mark.parametrize("name", MODELS)
def test_summary(name: str) -> None:
    model = _model(name)
    before = _state(model)
    s = summarize(model, INPUTS[name])
    assert s.params == count_parameters(model) == sum(layer.params for layer in s.layers)
    assert s.flops == sum(layer.flops for layer in s.layers) > 0  # every multiply-add is in a listed layer
    modules = dict(model.named_modules())
    for layer in s.layers:  # each layer's recorded output shape gives its FLOPs by hand
        m = modules[layer.name]
        times = CLASSES if name in PER_JOINT and layer.name.startswith(PER_JOINT[name]) else 1
        if isinstance(m, nn.Conv2d):
            c, h, w = layer.output_shape
            assert layer.flops == times * 2 * c * h * w * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1], layer.name
        elif isinstance(m, nn.Linear):
            assert layer.output_shape == [m.out_features] and layer.flops == 2 * m.in_features * m.out_features, layer.name
    assert _left_alone(model, before)


@pytest.mark.parametrize("name", MODELS)
def test_feature_maps(name: str) -> None:
    model, x = _model(name), _images(name, 1)[0]
    before = _state(model)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        with pytest.raises(CnnlabError, match="has no convolution layer"):
            feature_maps(model, x)
        return
    maps = feature_maps(model, x)
    assert list(maps) == [n for n, _ in convs]  # every convolution ran, listed in definition order
    for n, conv in convs:
        assert maps[n].ndim == 3 and maps[n].shape[0] == conv.out_channels, n
    assert (maps[convs[0][0]] < 0).any()  # copied before an in-place ReLU could zero the negatives
    assert _left_alone(model, before)
