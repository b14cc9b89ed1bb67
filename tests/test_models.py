"""Every registered model: its parameter count, a forward and backward pass on small inputs,
torchvision equality for the ImageNet layouts, and a clear error where an input is too small.

The registry drives the tests (as timm's do): a new model gets them all by registering.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import build_model, count_parameters, model_entries
from cnnlab.models.resnet import PadShortcut

ENTRIES = {e.name: e for e in model_entries()}

# Written out apart from the registry, so a wrong number there fails here. Sources: torchvision's
# model docs for the ImageNet nets; the arithmetic in each builder's docstring for the others.
EXPECTED_PARAMS = [
    ("logistic", (1, 28, 28), 10, 7_850),
    ("mlp", (1, 28, 28), 10, 269_322),
    ("lenet5", (1, 28, 28), 10, 61_706),
    ("lenet5", (1, 32, 32), 10, 61_706),
    ("alexnet", (3, 224, 224), 1000, 61_100_840),
    ("vgg11", (3, 224, 224), 1000, 132_863_336),
    ("vgg16", (3, 224, 224), 1000, 138_357_544),
    ("resnet20", (3, 32, 32), 10, 269_722),  # the paper's "0.27M", option A shortcuts
    ("resnet56", (3, 32, 32), 10, 853_018),  # the paper's "0.85M"
    ("resnet18", (3, 224, 224), 1000, 11_689_512),
    ("resnet50", (3, 224, 224), 1000, 25_557_032),
    # convs 1-16-32-32-64-64 (3x3, no bias) + their BatchNorms + a linear layer on the 7x7x64 map:
    # 144+4,608+9,216+18,432+36,864 + 2*(16+32+32+64+64) + 31,360+10
    ("fastnet", (1, 28, 28), 10, 101_050),
    # convs 3-32-64-64-256-256-256-256 + BatchNorms + a linear layer on a global max of 256
    ("fastnet-wide", (3, 32, 32), 10, 1_978_026),
    # convs 3-16-16, 32-32, 64-64, 128-128 (3x3, no bias) 293,040 + BatchNorms 960 + four 1x1 score layers 976
    ("fcn", (3, 96, 96), 4, 294_976),
    ("fcn-dagrnn", (3, 96, 96), 4, 377_408),  # + DAG-RNN U 33,024, W 16,384, V 32,768, its BatchNorm 256
    # 3x3 convs 3-16, 32, 64-64, 128-128, 256-256-256 (no bias) 1,756,080 + BatchNorms 2,400, then the heads:
    ("yolo", (3, 96, 96), 4, 1_761_821),  # 1x1 conv 256 -> 2 boxes x 5 + 3 classes, with bias: 3,341
    ("ssd", (3, 96, 96), 4, 1_942_896),  # 3x3 convs, 4 default boxes x (4 classes + 4 offsets) from 128/256/256: 184,416
    # clips (T, C, H, W): 3x3 convs 1-16-32-64 (no bias) 23,184 + BatchNorms 224 + a linear layer 64*8+8
    ("frame-cnn", (16, 1, 32, 32), 8, 23_928),
    ("two-stream", (16, 1, 32, 32), 8, 49_873),  # + a motion stream whose first conv takes 15 differences 25,944 + fusion 1
    ("c3d", (16, 1, 32, 32), 8, 70_296),  # 3x3x3 convs 1-16-32-64 69,552 + BatchNorms 224 + linear 520
    ("r3d_18", (16, 3, 112, 112), 400, 33_371_472),  # torchvision's docs
    ("r2plus1d_18", (16, 3, 112, 112), 400, 31_505_325),
    # generator 100*128*16 + 128*64*16 + 64*32*16 + 32*1*16 + 1 + BatchNorms 448; discriminator convs
    # 1*32*16 + 32 + 32*64*16 + 64*128*16 + 128*128*16 + 128 + BatchNorms 384 + score 129 (Radford et al. 2016, width 32)
    ("dcgan", (1, 28, 28), 10, 796_770),
    ("cdcgan", (1, 28, 28), 10, 818_530),  # + the one-hot class into the generator 10*128*16, + embeddings 10*128
    # stage 1: 3x3 convs 3-24-48-96-96-96 (no bias) 218,376 + BatchNorms 720 + 1x1 scores 96*14+14;
    # the refiner of crops: 3x3 convs 3-16-32-32 14,256 + BatchNorms 160 + 1x1 scores 32*14+14
    ("deeppose", (3, 96, 96), 14, 235_332),
]

# MNIST, CIFAR-10, and the smallest side that gets the ImageNet layouts (with an odd class count).
SMALL_INPUTS = [
    pytest.param((1, 28, 28), 10, id="1x28x28-10"),
    pytest.param((3, 32, 32), 10, id="3x32x32-10"),
    pytest.param((3, 64, 64), 7, id="3x64x64-7"),
]


def _count(name: str, input_shape: tuple[int, int, int], classes: int) -> int:
    with torch.device("meta"):  # counts need no memory, even VGG-16's 138M parameters
        return count_parameters(build_model(name, input_shape, classes))


def test_every_model_has_an_expected_count() -> None:
    assert set(ENTRIES) == {name for name, *_ in EXPECTED_PARAMS}


@pytest.mark.parametrize("name", list(ENTRIES))
def test_reference_parameter_count(name: str) -> None:
    e = ENTRIES[name]
    assert _count(name, e.reference_input, e.reference_classes) == e.reference_params


@pytest.mark.parametrize(("name", "input_shape", "classes", "params"), EXPECTED_PARAMS)
def test_parameter_count_matches_the_paper(
    name: str, input_shape: tuple[int, int, int], classes: int, params: int
) -> None:
    assert _count(name, input_shape, classes) == params


def test_meta_build_allocates_nothing() -> None:
    with torch.device("meta"):
        model = build_model("vgg16", (3, 224, 224), 1000)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize(("input_shape", "classes"), SMALL_INPUTS)
@pytest.mark.parametrize("name", list(ENTRIES))
def test_forward_and_backward(name: str, input_shape: tuple[int, int, int], classes: int) -> None:
    torch.manual_seed(0)
    shape = (2, *input_shape) if len(ENTRIES[name].reference_input) == 4 else input_shape  # a model of clips: 2 frames
    model = build_model(name, shape, classes)
    y = model(torch.rand(2, *shape))
    task = ENTRIES[name].tasks[0]
    expected = {"classify": (2, classes), "video": (2, classes), "segment": (2, classes, *input_shape[1:]),
                "generate": (2, classes if name == "cdcgan" else 1),  # a GAN's forward: the discriminator's scores
                "pose": (2, 2, classes, 2)}  # deeppose: each of its 2 stages' x, y of each joint
    assert task in (*expected, "detect")
    if task in expected:
        assert y.shape == expected[task]
    assert torch.isfinite(y).all()
    # a random projection of the outputs: logsumexp over classes would be a constant 0 for a model
    # whose outputs are log-probabilities (two-stream's fused mixture), with no gradient to follow
    y.mul(torch.randn(y.shape)).sum().backward()
    first = next(model.parameters())  # the first layer: the gradient went all the way back
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "vgg16", "resnet18", "resnet50"])
def test_imagenet_layout_equals_torchvision(name: str) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()  # random init, no download
    ours = build_model(name, (3, 64, 64), 1000).net.eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert count_parameters(ours) == count_parameters(theirs) == ENTRIES[name].reference_params
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def _first_kernel(net: nn.Module) -> int:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d)).kernel_size[0]


def _has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize(
    ("name", "tell", "small", "large"),
    [
        ("alexnet", _first_kernel, 3, 11),
        ("resnet18", _first_kernel, 3, 7),
        ("resnet50", _first_kernel, 3, 7),
        ("vgg11", _has_batchnorm, True, False),
        ("vgg16", _has_batchnorm, True, False),
    ],
)
def test_builder_switches_layout_at_64_pixels(
    name: str, tell: Callable[[nn.Module], object], small: object, large: object
) -> None:
    """Under 64 px the ImageNet stem would leave almost nothing; one side of 63 gets the small layout."""
    with torch.device("meta"):
        assert tell(build_model(name, (3, 64, 63), 10).net) == small
        assert tell(build_model(name, (3, 64, 64), 10).net) == large


def test_cifar_resnet_has_20_layers_and_parameter_free_shortcuts() -> None:
    """6n+2 = 20 weighted layers for n = 3; option A shortcuts at the two stage changes."""
    net = build_model("resnet20", (3, 32, 32), 10).net
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == 20 and all(m.kernel_size == (3, 3) for m in convs)
    shortcuts = [m for m in net.modules() if isinstance(m, PadShortcut)]
    assert len(shortcuts) == 2 and not list(shortcuts[0].parameters())


def test_pad_shortcut_subsamples_and_appends_zero_channels() -> None:
    x = torch.rand(2, 16, 9, 9)
    y = PadShortcut(extra_channels=16, stride=2)(x)
    assert y.shape == (2, 32, 5, 5)  # what the block's 3x3, stride-2, padding-1 convolution gives
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


@pytest.mark.parametrize(
    ("name", "input_shape", "message"),
    [
        ("lenet5", (1, 11, 28), r"^lenet5 needs images of at least 12x12 pixels \(got 11x28\); resize them up"),
        ("alexnet", (3, 7, 7), r"^alexnet needs images of at least 8x8 pixels \(got 7x7\); resize them up"),
    ],
)
def test_too_small_input_is_one_clear_sentence(
    name: str, input_shape: tuple[int, int, int], message: str
) -> None:
    with pytest.raises(CnnlabError, match=message):
        build_model(name, input_shape, 10)


@pytest.mark.parametrize(
    ("name", "side"), [("lenet5", 12), ("alexnet", 8), ("vgg16", 1), ("resnet20", 1), ("resnet18", 1)]
)
def test_smallest_accepted_input_runs(name: str, side: int) -> None:
    """The limits are real: the smallest side each builder accepts does run."""
    model = build_model(name, (1, side, side), 3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, side, side)).shape == (1, 3)
