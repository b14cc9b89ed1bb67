"""SSD: scores for default boxes of several sizes on feature maps of several strides (Liu,
Anguelov, Erhan, Szegedy, Reed, Fu & Berg 2016, "SSD: Single Shot MultiBox Detector", ECCV).

Where YOLO gives each grid cell boxes of any size, SSD tiles every feature map of a backbone
with default boxes ("anchors") of a few fixed sizes and shapes: small ones on the fine maps,
large ones on the coarse maps (section 2.2, eq. 4). For every default box a 3x3 convolution
predicts a score for each class (background included) and four offsets that move and stretch
it onto an object. Training matches each true box to the default boxes that overlap it by
IoU >= 0.5 (and to its best one in any case); the loss (eq. 1) is

    L = (1 / N_pos) [ Σ_pos smooth_L1(offsets - encoded true box) + Σ_pos CE + Σ_hard neg CE ]

with hard negative mining: of the default boxes matched to nothing, only those with the
highest background loss count, three for every positive, so that the thousands of easy
background boxes do not swamp the few objects.

The parts are torchvision's: `SSDHead` (the 3x3 class and offset convolutions),
`DefaultBoxGenerator` (the default boxes), `BoxCoder` (offsets <-> boxes) and `SSDMatcher`.
Its `SSD` class is not used whole: its forward wants targets in training mode and returns
losses there and box lists in eval mode, while a cnnlab model returns one tensor of raw
outputs; the loss below is `SSD.compute_loss` written out (tests/test_detect.py checks they
agree), and non-maximum suppression is the detection task's, with `torchvision.ops`.

The backbone is ours: stages of 3x3 convolutions with BatchNorm, a 2x2 max-pool between them,
read at strides 8, 16 and 32 (12x12, 6x6 and 3x3 maps at 96 px). The paper's is VGG-16
pre-trained on ImageNet, at 300 px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import ModelSpec, register_model
from cnnlab.models.yolo import clip_to_image, stages

# The backbone up to stride 8, then one stage per further map; every map is read by the head.
STEM = ((16,), (32,), (64, 64), (128, 128))
MAPS = ((256, 256), (256,))  # strides 16 and 32, each entered through a 2x2 max-pool that rounds up
# Default box sides as a share of the image, one per map and one past the last (torchvision's
# `scales`; eq. 4 spaces them evenly from 0.2 to 0.9). `shapes` objects are 10-52 px wide at
# 96 px: the 12x12 map's boxes are 14 and 20 px, the 6x6 map's 29 and 37, the 3x3 map's 48 and 61.
SCALES = [0.15, 0.3, 0.5, 0.8]
ASPECT_RATIOS = [[2], [2], [2]]  # per location: two squares (s_k, sqrt(s_k s_k+1)), 2:1 and 1:2
IOU_MATCH = 0.5  # a default box with IoU >= 0.5 to a true box learns it (the paper's)
NEG_TO_POS = 3  # hard negatives per positive (the paper's 3:1)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # offsets scaled as torchvision's SSD (the paper code's variances 0.1, 0.2)
MIN_SIDE = 8  # the stem's three pools leave a 1x1 map; the further maps are 1x1 too
# What `cnnlab train` uses where the user chose no optimizer or lr. Measured on 32 `shapes`
# scenes (seed 0, batches of 16, constant lr): Nesterov SGD at its default 0.05 throws the loss
# from 16.7 to 45.5 in three steps and is still at 9.6 after twelve; AdamW at 2e-3 is at 3.9.
TRAINING = {"optimizer": "adamw", "lr": 2e-3}


class MultiScale(nn.Module):
    """The stem (stride 8), then one stage per coarser map: x (N, C, H, W) -> a list of maps at
    strides 8, 16, 32 with `out_channels` channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.stem = stages(in_channels, STEM)
        widths = [STEM[-1][-1], *(stage[-1] for stage in MAPS)]
        self.extra = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), stages(c, (stage,)))  # ceil: a 1x1 map stays 1x1
            for c, stage in zip(widths[:-1], MAPS, strict=True)
        )
        self.out_channels = widths

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = [self.stem(x)]
        for stage in self.extra:
            maps.append(stage(maps[-1]))
        return maps


class SSD(nn.Module):
    """Multi-scale backbone -> torchvision's SSDHead on each map.

    x: (N, C, H, W) -> raw outputs (N, A, 4 + K): for each of the A default boxes, four
    offsets (BoxCoder's encoding) and K class logits, class 0 the background.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        # imported here, not at the top: torchvision costs ~1.2 s and every command loads the registry
        from torchvision.models.detection._utils import BoxCoder, SSDMatcher
        from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
        from torchvision.models.detection.ssd import SSDHead

        super().__init__()
        self.image_size = image_size  # (H, W) in pixels
        self.backbone = MultiScale(in_channels)
        self.anchor_generator = DefaultBoxGenerator(ASPECT_RATIOS, scales=SCALES)
        self.head = SSDHead(self.backbone.out_channels, self.anchor_generator.num_anchors_per_location(), num_classes)
        self.box_coder = BoxCoder(BOX_WEIGHTS)
        self.matcher = SSDMatcher(IOU_MATCH)
        # the default boxes (A, 4) in pixels depend only on the image size: made once, never saved
        self.register_buffer("anchors", self.default_boxes(in_channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.backbone(x))
        return torch.cat([out["bbox_regression"], out["cls_logits"]], -1)

    def default_boxes(self, in_channels: int) -> Tensor:
        """(A, 4) x1, y1, x2, y2 in pixels, in the order of the head's outputs. The generator
        reads only the shapes of the image and of the maps, so empty tensors stand for them; made
        on the CPU even when the model is built on the meta device (to count its parameters), as
        a meta tensor holds no numbers."""
        from torchvision.models.detection.image_list import ImageList

        h, w = self.image_size
        sides = [(h // 8, w // 8)]  # the stem's pools round down
        for _ in MAPS:  # the further pools round up
            sides.append((-(-sides[-1][0] // 2), -(-sides[-1][1] // 2)))
        with torch.device("cpu"):
            image = torch.empty(1, in_channels, h, w)
            maps = [torch.empty(1, 0, *side) for side in sides]
            return self.anchor_generator(ImageList(image, [self.image_size]), maps)[0]

    def match(self, boxes: Tensor, labels: Tensor) -> Tensor:
        """(N, A) the index of the true box each default box learns, -1 for none (background).
        boxes (N, M, 4), labels (N, M): padding (-1) and boxes with no area match nothing."""
        from torchvision.ops import box_iou

        anchors = self.anchors.to(boxes.device)
        matched = torch.full((len(boxes), len(anchors)), -1, dtype=torch.long, device=boxes.device)
        for i, (image_boxes, image_labels) in enumerate(zip(boxes, labels, strict=True)):
            real = torch.nonzero((image_labels > 0) & (image_boxes[:, 2:] > image_boxes[:, :2]).all(1)).flatten()
            if len(real):
                best = self.matcher(box_iou(image_boxes[real], anchors))  # (A,) among the real boxes, -1: none
                matched[i] = torch.where(best >= 0, real[best.clamp_min(0)], -1)
        return matched

    def detection_loss(self, outputs: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        """eq. 1 of the paper as torchvision's `SSD.compute_loss` computes it (their sum),
        averaged over the positives of the batch. boxes (N, M, 4) in pixels, labels (N, M)."""
        outputs = outputs.float()
        offsets, logits = outputs[..., :4], outputs[..., 4:]
        matched = self.match(boxes, labels)
        positive = matched >= 0
        index = matched.clamp_min(0)
        true_boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4))  # (N, A, 4)
        anchors = self.anchors.to(outputs.device).expand_as(true_boxes)
        target = self.box_coder.encode_single(true_boxes[positive], anchors[positive])
        box_loss = F.smooth_l1_loss(offsets[positive], target, reduction="sum")
        classes = torch.where(positive, labels.gather(1, index), 0)
        ce = F.cross_entropy(logits.flatten(0, 1), classes.flatten(), reduction="none").view_as(classes)
        # hard negative mining: per image, the NEG_TO_POS x positives background boxes of highest loss
        background_loss = ce.masked_fill(positive, -float("inf"))
        rank = background_loss.sort(1, descending=True)[1].sort(1)[1]  # 0 for the highest loss
        hard_negative = rank < NEG_TO_POS * positive.sum(1, keepdim=True)
        return (box_loss + ce[positive].sum() + ce[hard_negative].sum()) / max(1, int(positive.sum()))

    def candidates(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """Every default box moved by its offsets, before non-maximum suppression: boxes (N, A, 4)
        x1, y1, x2, y2 in pixels, clipped to the image, and class probabilities (N, A, K)."""
        outputs = outputs.float()
        anchors = self.anchors.to(outputs.device)
        boxes = self.box_coder.decode_single(outputs[..., :4].flatten(0, 1), anchors.repeat(len(outputs), 1))
        boxes = clip_to_image(boxes, self.image_size).view(len(outputs), -1, 4)
        return boxes, outputs[..., 4:].softmax(-1)


@register_model(
    family="ssd",
    paper="Liu, Anguelov, Erhan, Szegedy, Reed, Fu & Berg 2016, SSD: Single Shot MultiBox Detector",
    reference_input=(3, 96, 96),
    reference_classes=4,
    reference_params=1_942_896,
    tasks=("detect",),
    training=TRAINING,
)
def ssd(spec: ModelSpec) -> nn.Module:
    """A small SSD: default boxes on 3 maps (strides 8, 16, 32), 4 per location (Liu et al. 2016).

    1,942,896 parameters for RGB -> 4 classes (the `shapes` data set), at any image size: the
    same convolutions and BatchNorms as `yolo`'s backbone (1,756,080 + 2,400; the two differ by
    their heads), and the head's 3x3 convolutions, per map 4 default boxes x (4 classes + 4
    offsets) outputs from 128, 256 and 256 channels (with bias) 184,416.
    """
    if min(spec.height, spec.width) < MIN_SIDE:
        raise CnnlabError(f"ssd needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels (got {spec.height}x{spec.width}).")
    return SSD(spec.channels, spec.num_classes, (spec.height, spec.width))
