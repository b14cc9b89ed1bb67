"""Models of clips: x (N, T, C, H, W) in [0, 1] -> logits (N, K).

- `frame-cnn`: a 2-D CNN of one frame, the middle one: the baseline that sees no motion.
- `two-stream`: an appearance stream (the middle frame) and a motion stream (the T-1 frame
  differences stacked as channels), fused late by a weighted mean of their class probabilities
  (Simonyan & Zisserman 2014, "Two-Stream Convolutional Networks for Action Recognition in
  Videos"; they stack optical flow, here the plain differences it approximates).
- `c3d`: 3x3x3 convolutions over time and space (Tran et al. 2015, "Learning Spatiotemporal
  Features with 3D Convolutional Networks"), small.
- `r3d_18`, `r2plus1d_18`: torchvision's ResNet-18 of 3-D convolutions and of (2+1)-D ones
  (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition"),
  built untrained (weights=None): 33.4 and 31.5 million parameters at Kinetics-400's 400 classes.

Every model here is built for clips (`build_model(name, (T, C, H, W), K)`), and reads the
frames as its own first step, so the spine (batches, augmentation, runs) sees one tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import ModelSpec, register_model

CLIP = (16, 1, 32, 32)  # moving-actions' clips: the reference input of the small models here
KINETICS = (16, 3, 112, 112)  # the input and classes torchvision's video ResNets were made for
TASKS = ("video",)


def frame_cnn_2d(in_channels: int, num_classes: int) -> nn.Sequential:
    """Three 3x3 conv blocks (16, 32, 64 channels, BatchNorm, ReLU, 2x2 max-pool but the last),
    a global average and a linear layer: a small CNN of any side, the stream of both models.
    Narrow on purpose: on 2 CPU cores the two streams train at ~4x the clips per second of
    32-64-128 channels, and a glyph on a smooth background needs no more."""
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(((in_channels, 16), (16, 32), (32, 64))):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2) if i < 2 else nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, num_classes))


class FrameCNN(nn.Module):
    """A 2-D CNN of the clip's middle frame alone."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.cnn = frame_cnn_2d(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (N, T, C, H, W) -> (N, K)
        return self.cnn(x[:, x.shape[1] // 2])


class TwoStream(nn.Module):
    """Appearance (the middle frame) and motion (the frame differences, (T-1)*C channels),
    each a 2-D CNN with its own class scores, fused late: a weighted mean of their class
    probabilities, alpha * p_appearance + (1 - alpha) * p_motion.

    The paper fuses by the plain mean (alpha = 1/2) or by a linear SVM on the stacked scores;
    here alpha = sigmoid(gate) is learned with the streams, starting at 1/2. Measured on
    moving-actions, where one frame carries no class by construction: with the plain mean the
    appearance stream, pushed to raise the fused score of the right class, learned 66% of the
    training clips by heart (12% on the test clips, chance) and its confident guesses cost the
    fusion against the motion stream alone (test 0.996 vs 1.000; validation 0.975 vs 1.0 at
    epoch 30). Learned, alpha fell to 0.19 while the motion stream alone explained the training
    clips, and the appearance stream's gradient with it (it learned 20% of them): fused and
    motion both 1.000 on the test clips (docs/results.md).

    `forward` returns the log of the fused probabilities, so that cross-entropy on it trains
    the fusion and its softmax is the fused probabilities; `streams` gives each stream's own
    logits, to show what each knows alone (the paper's Table 3 compares both and their fusion)."""

    def __init__(self, frames: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.appearance = frame_cnn_2d(channels, num_classes)
        self.motion = frame_cnn_2d((frames - 1) * channels, num_classes)
        self.gate = nn.Parameter(torch.zeros(()))  # alpha = sigmoid(gate), 1/2 at the start: the paper's mean

    def streams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(appearance logits, motion logits), each (N, K)."""
        differences = (x[:, 1:] - x[:, :-1]).flatten(1, 2)  # (N, (T-1)*C, H, W): what moved, and which way
        return self.appearance(x[:, x.shape[1] // 2]), self.motion(differences)

    def forward(self, x: Tensor) -> Tensor:
        appearance, motion = self.streams(x)
        weights = torch.stack([self.gate, -self.gate]).sigmoid()  # (alpha, 1 - alpha)
        log_probs = torch.stack([appearance.log_softmax(1), motion.log_softmax(1)])  # (2, N, K)
        return (log_probs + weights.log()[:, None, None]).logsumexp(0)  # log(alpha p_a + (1 - alpha) p_m)


class C3D(nn.Module):
    """Tran et al. 2015 kept small: 3x3x3 convolutions (their best kernel), 16-32-64 channels.
    The first convolution strides 2 in space (as ResNet stems do) and is followed by a pooling
    over space only (1x2x2: "not to merge the temporal signal too early"), then 2x2x2: on 2
    CPU cores that trains twice as fast as the paper's unstrided first layer, and the first
    layer still sees every pixel of every frame. BatchNorm after each convolution (not in the
    paper: it trains in minutes from scratch), a global average instead of their two
    4,096-wide layers."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(channels, 16, 3, stride=(1, 2, 2), padding=1, bias=False), nn.BatchNorm3d(16), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 2, 2), ceil_mode=True),
            nn.Conv3d(16, 32, 3, padding=1, bias=False), nn.BatchNorm3d(32), nn.ReLU(inplace=True),
            nn.MaxPool3d(2, ceil_mode=True),
            nn.Conv3d(32, 64, 3, padding=1, bias=False), nn.BatchNorm3d(64), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:  # (N, T, C, H, W) -> (N, K)
        return self.head(self.features(x.transpose(1, 2)))  # 3-D convolutions take (N, C, T, H, W)


class ChannelsFirst(nn.Module):
    """A torchvision video model, which takes (N, C, T, H, W), fed our (N, T, C, H, W)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.transpose(1, 2))


@register_model("video", "baseline: a 2-D CNN of one frame", CLIP, 8, 23_928, name="frame-cnn", tasks=TASKS)
def frame_cnn(spec: ModelSpec) -> nn.Module:
    """The middle frame through `frame_cnn_2d`: convs 9*1*16 + 9*16*32 + 9*32*64 (no bias) 23,184,
    BatchNorms 224, linear 64*8+8 520: 23,928 for gray frames and 8 classes."""
    return FrameCNN(spec.channels, spec.num_classes)


@register_model("video", "Simonyan & Zisserman 2014, Two-Stream Convolutional Networks for Action Recognition in Videos",
                CLIP, 8, 49_873, name="two-stream", tasks=TASKS)
def two_stream(spec: ModelSpec) -> nn.Module:
    """Appearance stream 23,928 (as frame-cnn) + a motion stream whose first conv takes the 15
    difference channels (9*15*16 instead of 9*1*16): 25,944 + the fusion weight: 49,873 for 16
    gray frames and 8 classes."""
    frames = spec.frames or 1
    if frames < 2:
        raise CnnlabError(f"two-stream needs clips of at least 2 frames (its motion stream reads their differences), got {frames}.")
    return TwoStream(frames, spec.channels, spec.num_classes)


@register_model("video", "Tran et al. 2015, Learning Spatiotemporal Features with 3D Convolutional Networks",
                CLIP, 8, 70_296, tasks=TASKS)
def c3d(spec: ModelSpec) -> nn.Module:
    """Convs 27*1*16 + 27*16*32 + 27*32*64 (no bias) 69,552, BatchNorms 224, linear 64*8+8 520:
    70,296 for gray clips and 8 classes (any clip length and side)."""
    return C3D(spec.channels, spec.num_classes)


def _torchvision_video(builder_name: str, spec: ModelSpec) -> nn.Module:
    """torchvision's `builder_name` (untrained) for spec's classes, its stem's first convolution
    remade for spec's channels when they are not RGB (gray clips)."""
    from torchvision.models import video

    net = getattr(video, builder_name)(weights=None, num_classes=spec.num_classes)
    stem = net.stem[0]
    if spec.channels != stem.in_channels:
        net.stem[0] = nn.Conv3d(spec.channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
    return ChannelsFirst(net)


@register_model("video", "Tran et al. 2018, A Closer Look at Spatiotemporal Convolutions (R3D-18, torchvision)",
                KINETICS, 400, 33_371_472, tasks=TASKS)
def r3d_18(spec: ModelSpec) -> nn.Module:
    """torchvision's r3d_18: 33,371,472 parameters at Kinetics-400's 400 classes."""
    return _torchvision_video("r3d_18", spec)


@register_model("video", "Tran et al. 2018, A Closer Look at Spatiotemporal Convolutions (R(2+1)D-18, torchvision)",
                KINETICS, 400, 31_505_325, tasks=TASKS)
def r2plus1d_18(spec: ModelSpec) -> nn.Module:
    """torchvision's r2plus1d_18: 31,505,325 parameters at Kinetics-400's 400 classes."""
    return _torchvision_video("r2plus1d_18", spec)
