"""DCGAN: a generator that turns noise into images and a discriminator that tells them from real ones.

`dcgan` (Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", ICLR), as the paper's section 3 lists it:
- the generator: a latent vector z (100 numbers from N(0, 1)) projected to a 4x4 map, then
  transposed convolutions (4x4, stride 2) doubling the side and halving the channels, each
  followed by BatchNorm and ReLU, the last by tanh (no BatchNorm on the output);
- the discriminator: the mirror, strided convolutions (4x4, stride 2) halving the side, each
  followed by BatchNorm (none on the first layer) and LeakyReLU(0.2); no pooling, no fully
  connected hidden layer;
- weights from N(0, 0.02), BatchNorm scales from N(1, 0.02).

`cdcgan`: the same nets told which class to draw (Mirza & Osindero 2014, "Conditional
Generative Adversarial Nets"): the generator reads z beside the class as a one-hot vector; the
discriminator scores an image for each class by projection (Miyato & Koyama 2018, "cGANs with
Projection Discriminator", eq. 3): score_k(x) = w . phi(x) + e_k . phi(x), where phi(x) are the
discriminator's features and e_k a learned embedding of class k.

Every cnnlab model takes pixels in [0, 1]; tanh gives [-1, 1], so the generator maps its
output to pixels by (t + 1) / 2. The discriminator reads whatever the model's Normalize layer
gives it (standardised pixels: another affine map of the same images).

Sides: the nets work on a square of side S, the smallest power of two >= the image's sides (at
least 8); an image smaller than S is padded with zeros all round for the discriminator (real
and generated alike, so the frame tells nothing apart), and the generator's S x S output is
cropped to the image's size. Fashion-MNIST's and digits' 28x28 become 32x32 (the padding
LeNet-5 gives them too), CIFAR's 32x32 stay, so one net serves any image dataset of cnnlab.

The forward pass is the discriminator's: `model(x)` -> (N, K) scores (logits of "real"), one
per class for `cdcgan` (K classes), one for `dcgan` (K = 1); the generator is `model.net.generator`.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.models.registry import ModelSpec, register_model

LATENT = 100  # the paper's z: 100 numbers drawn from N(0, 1)
# Channels at the finest stage. The paper's 64x64 LSUN nets use 128. Here 32: on 2 idle CPU
# cores an epoch of Fashion-MNIST takes ~45 s, and 11 epochs in 10 minutes reach a
# classifier-FID 2.9x the real-vs-real floor; width 16 (3.2x fewer parameters, ~1.7x faster)
# stayed above 13x after 4 epochs (docs/results.md).
WIDTH = 32
MAX_WIDTH = 256  # the channel count stops doubling here (images of 128 px and more)
LEAK = 0.2  # LeakyReLU slope in the discriminator (the paper's 0.2)
# What `cnnlab train` uses for the options the user does not set: the paper's section 4
# (Adam at 2e-4, constant, no weight decay; its batches of 128 halved, for twice the updates per
# epoch of a short CPU training). The run's optimizer steps the generator; the discriminator's
# own Adam takes the same rate (cnnlab.tasks.generate).
TRAINING = {"optimizer": "adam", "lr": 2e-4, "schedule": "none", "weight_decay": 0.0, "batch_size": 64}


def net_side(height: int, width: int) -> int:
    """The side S the nets work at: the smallest power of two >= both sides, at least 8."""
    return max(8, 2 ** math.ceil(math.log2(max(height, width))))


def widths(side: int) -> list[int]:
    """Channels at each resolution from 4x4 up to side / 2: (4, 8, ..., side / 2) for the generator
    (the discriminator reads them backwards), WIDTH at side / 2 and doubling toward 4x4."""
    stages = int(math.log2(side // 4))  # 4 -> 8 -> ... -> side: one doubling per stage
    return [min(WIDTH * 2 ** (stages - 1 - i), MAX_WIDTH) for i in range(stages)]


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, Projection)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (N, LATENT) [+ class (N,)] -> pixels (N, C, H, W) in [0, 1]."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.size, self.num_classes = (height, width), num_classes  # num_classes 0: unconditional
        chans = widths(net_side(height, width))
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            project=nn.ConvTranspose2d(LATENT + num_classes, chans[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            bn0=nn.BatchNorm2d(chans[0]),
            relu0=nn.ReLU(inplace=True),
        )
        for i, (c_in, c_out) in enumerate(zip(chans, chans[1:]), start=1):
            layers[f"up{i}"] = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)  # doubles the side
            layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
        layers["out"] = nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1)
        layers["tanh"] = nn.Tanh()
        self.layers = nn.Sequential(layers)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], 1)  # type: ignore[arg-type]
        t = self.layers(z[:, :, None, None])  # (N, C, S, S) in [-1, 1]
        return crop(t, self.size).add(1).div(2)  # tanh's range -> pixels


class Projection(nn.Module):
    """phi (N, F) -> e_k . phi for every class k, (N, K) (Miyato & Koyama 2018, eq. 3): the class
    embeddings e_k as a layer of their own, so that `cnnlab summary` counts their multiply-adds."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, features))  # e_k, one row per class
        nn.init.normal_(self.weight)  # as nn.Embedding draws its rows (init_weights then redraws them)

    def forward(self, phi: Tensor) -> Tensor:
        return phi @ self.weight.T


class Discriminator(nn.Module):
    """x (N, C, H, W) as the Normalize layer gives it -> (N, K) scores: one per class with
    projection (K = num_classes), one otherwise."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.side = net_side(height, width)
        chans = widths(self.side)[::-1]  # side / 2 ... 4x4
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(channels, chans[0], 4, 2, 1),  # no BatchNorm on the first layer (the paper)
            lrelu0=nn.LeakyReLU(LEAK, inplace=True),
        )
        for i, (c_in, c_out) in enumerate(zip(chans, chans[1:]), start=1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)  # halves the side
            layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
            layers[f"lrelu{i}"] = nn.LeakyReLU(LEAK, inplace=True)
        layers["features"] = nn.Conv2d(chans[-1], chans[-1], 4, 1, 0)  # 4x4 -> 1x1: phi(x)
        self.layers = nn.Sequential(layers)
        self.score = nn.Linear(chans[-1], 1)  # w . phi(x)
        self.embed = Projection(chans[-1], num_classes) if num_classes else None  # e_k (projection)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        top, left = (self.side - h) // 2, (self.side - w) // 2
        x = F.pad(x, (left, self.side - w - left, top, self.side - h - top))
        phi = F.leaky_relu(self.layers(x).flatten(1), LEAK)  # (N, F)
        scores = self.score(phi)  # (N, 1)
        return scores if self.embed is None else scores + self.embed(phi)  # (N, K)


def crop(t: Tensor, size: tuple[int, int]) -> Tensor:
    """The centre (H, W) of maps (N, C, S, S)."""
    h, w = size
    top, left = (t.shape[-2] - h) // 2, (t.shape[-1] - w) // 2
    return t[..., top : top + h, left : left + w]


class DCGAN(nn.Module):
    """A generator and its discriminator in one module, so one weights file holds both.
    The discriminator comes first: it is what the forward pass runs."""

    def __init__(self, spec: ModelSpec, conditional: bool) -> None:
        super().__init__()
        c, h, w = spec.input_shape
        k = spec.num_classes if conditional else 0
        self.discriminator = Discriminator(c, h, w, k)
        self.generator = Generator(c, h, w, k)
        self.latent, self.num_classes = LATENT, k
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.discriminator(x)


@register_model(
    family="dcgan",
    paper="Radford, Metz & Chintala 2016, Unsupervised Representation Learning with Deep Convolutional GANs",
    reference_input=(1, 32, 32), reference_classes=10,
    # generator 369,601: transposed convs 100*128*16 + 128*64*16 + 64*32*16 + 32*1*16 + 1, BatchNorms 2*(128+64+32)
    # discriminator 427,169: convs 1*32*16 + 32 + 32*64*16 + 64*128*16 + 128*128*16 + 128, BatchNorms 2*(64+128), score 129
    reference_params=796_770,
    tasks=("generate",),
    training=TRAINING,
)
def dcgan(spec: ModelSpec) -> nn.Module:
    """An unconditional DCGAN (its samples are of no chosen class)."""
    return DCGAN(spec, conditional=False)


@register_model(
    family="dcgan",
    paper="Radford et al. 2016 (DCGAN) with Mirza & Osindero 2014 (conditional GAN) and Miyato & Koyama 2018 (projection)",
    reference_input=(1, 32, 32), reference_classes=10,
    reference_params=796_770 + 10 * 128 * 16 + 10 * 128,  # + the one-hot class into the generator, + embeddings e_k
    tasks=("generate",),
    training=TRAINING,
)
def cdcgan(spec: ModelSpec) -> nn.Module:
    """A class-conditional DCGAN: `generator(z, labels)` draws the classes asked for."""
    return DCGAN(spec, conditional=True)
