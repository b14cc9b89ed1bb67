"""DeepPose: a CNN regresses the joints' coordinates, then a cascade of CNNs refines each joint
from a crop around its estimate (Toshev & Szegedy 2014, "DeepPose: Human Pose Estimation via
Deep Neural Networks", CVPR).

Stage 1 (section 3.1) sees the whole image and regresses all J joints at once, as coordinates
normalised to the image (eq. 1: N(y; b) = (y - b_c) / b_wh); the joints are learned together,
so each is placed in the context of the whole body. Each later stage s (section 3.2) crops a
patch around every joint's stage s-1 estimate and regresses the joint's displacement from the
patch's centre, normalised by the patch (eq. 5): seen at higher resolution, the joint is placed
more precisely than the whole-image regressor can. The crops are cut by
`torchvision.ops.roi_align` (bilinear, so the estimate need not sit on a pixel), CROP of the
image side, and resampled to CROP_PIXELS a side.

Training (section 3.2): a stage learns to correct the errors its predecessor makes, so it is
trained on the previous stage's outputs plus displacements sampled from a normal distribution
whose spread is that of the previous stage's errors (the paper's simulated predictions, which
enlarge the refiners' training set: each epoch shows every joint at new offsets). The spread is
a running estimate (momentum MOMENTUM, like BatchNorm's statistics) updated from each training
batch by `cascade_loss`, which the pose task calls, so it follows the errors as they shrink.

What differs from the paper, for 96x96 figures and 2 CPU cores: small backbones with BatchNorm
(the paper: AlexNet for every stage, 220x220 inputs), and each regressor's last layers are a
1x1 convolution scoring every place of its map for each joint and the spatial soft arg max of
those scores (their expected x, y; Levine et al. 2016) where the paper has fully connected
layers. It is still a regression of normalised coordinates under the same L2 loss, but one
that keeps convolution's sharing across places; and in training each map also learns where its
joint is by a cross-entropy against the true place (`place_loss`). Measured on stick-figures
with 1 of 2 busy cores, stage-1 PCK@0.2 after 2 epochs: 0.13-0.15 with the fully connected
head, 0.49 with this one (docs/results.md). One refiner serves all joints, each with its own map (the
paper trains one per joint); crops are a fixed share of the image (the paper: of the figure's
estimated size); two stages, not three. The forward returns every stage's estimate,
(N, S, J, 2) in pixels, so each stage is scored (cnnlab.tasks.pose).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import ModelSpec, register_model

STAGES = 2  # the whole-image regressor and one refinement (the paper: S = 3; a second refiner adds half again to the time)
CROP = 1 / 6  # share of the image side cut around each estimate: 16 px at 96, about a limb's length
CROP_PIXELS = 16  # side the crop is resampled to: at 96 px, the image's own resolution
MOMENTUM = 0.1  # weight of a batch's errors in the running spread
START_SPREAD = 0.05  # share of the side: the spread before the first batch is observed
MIN_SIDE = 16  # stage 1 sees half the side, then two pools: a 2x2 map at least
# Stage 1 sees the image at half its resolution (4x fewer operations: coarse is its role; the
# refiners see the crops at full resolution). (width, dilation) of each 3x3 convolution, a 2x2
# max-pool where the list says "pool": dilations 2 and 4 at the end widen the view to the whole
# image (a wrist is told left from right by the shoulder its arm leads to).
WHOLE_SHRINK = 2
# Widths measured on stick-figures (1 core of 2 busy ones, Adam 4e-3): (16, 32, 64, 64, 64) had
# stage-1 PCK@0.2 0.35, 0.53 and 0.64 after epochs 2-4 and stalled at 0.74 by epoch 8;
# (24, 48, 96, 96, 96) had 0.49, 0.64, ... at twice the time an epoch.
WHOLE = [(24, 1), "pool", (48, 1), "pool", (96, 1), (96, 2), (96, 4)]  # a map of a quarter of the side
PATCH = [(16, 1), "pool", (32, 1), (32, 2)]  # a refiner: 8x8 at 16 px, one cell of the map a 2 px square


def convolutions(channels: int, layers: Sequence[tuple[int, int] | str]) -> tuple[nn.Sequential, int]:
    """(3x3 convolution with dilation, BatchNorm, ReLU) and 2x2 max-pools as `layers` list
    them; returns the stack and its output channels."""
    modules: list[nn.Module] = []
    for layer in layers:
        if layer == "pool":
            modules.append(nn.MaxPool2d(2))
            continue
        width, dilation = layer
        modules += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation, bias=False),
                    nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        channels = width
    return nn.Sequential(*modules), channels


def soft_argmax(logits: Tensor) -> Tensor:
    """(N, J, h, w) scores -> (N, J, 2) the expected x, y under their softmax over the map, in
    [0, 1] of its side (cell centres at (i + 0.5) / w): a differentiable arg max (the spatial
    softmax of Levine et al. 2016, "End-to-End Training of Deep Visuomotor Policies", sec. 4.2)."""
    n, j, h, w = logits.shape
    p = logits.flatten(2).softmax(-1).view(n, j, h, w)
    xs = (torch.arange(w, device=logits.device, dtype=p.dtype) + 0.5) / w
    ys = (torch.arange(h, device=logits.device, dtype=p.dtype) + 0.5) / h
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], -1)


class Regressor(nn.Module):
    """Convolutions, a 1x1 convolution scoring each place of the map for each joint, and the
    spatial soft arg max of those scores: each joint's x, y normalised to the input, (N, J, 2)."""

    def __init__(self, channels: int, layers: Sequence[tuple[int, int] | str], joints: int) -> None:
        super().__init__()
        self.features, width = convolutions(channels, layers)
        self.scores = nn.Conv2d(width, joints, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """-> (N, J, 2) x, y in [0, 1] of the input, and the scores (N, J, h, w) they come from."""
        scores = self.scores(self.features(x))
        return soft_argmax(scores), scores


class DeepPose(nn.Module):
    """x (N, C, H, W) -> (N, STAGES, J, 2) each stage's estimate of every joint, x, y in pixels."""

    def __init__(self, channels: int, height: int, width: int, joints: int, num_stages: int = STAGES) -> None:
        super().__init__()
        self.joints, self.height, self.width = joints, height, width
        self.crop = CROP * max(height, width)
        self.whole = Regressor(channels, WHOLE, joints)
        self.refiners = nn.ModuleList(Regressor(channels, PATCH, joints) for _ in range(num_stages - 1))
        self.maps: list[tuple[Tensor, Tensor | None]] | None = None  # the last training batch's score maps
        # the spread (pixels) of the displacements added to stage s's estimates when stage s+1 trains
        self.register_buffer("spread", torch.full((max(num_stages - 1, 1),), START_SPREAD * max(height, width)))

    def forward(self, x: Tensor) -> Tensor:
        n = len(x)
        size = torch.tensor([self.width, self.height], dtype=x.dtype, device=x.device)
        coarse = torch.nn.functional.avg_pool2d(x, WHOLE_SHRINK)
        found, scores = self.whole(coarse)
        estimate = found * size - 0.5  # normalised -> pixels (centres at integers)
        estimates, maps = [estimate], [(scores, None)]
        for s, refiner in enumerate(self.refiners):
            centre = estimate.detach()  # each stage is its own regressor: no gradient flows back into the last
            if self.training:
                centre = centre + self.spread[s] * torch.randn_like(centre)
            found, scores = refiner(self.crops(x, centre))
            joint = torch.arange(self.joints, device=x.device)
            own = found.view(n, self.joints, self.joints, 2)[:, joint, joint]  # joint j's crop: its own map
            estimate = centre + (own - 0.5) * self.crop  # the displacement from the crop's centre
            estimates.append(estimate)
            maps.append((scores.view(n, self.joints, self.joints, *scores.shape[-2:])[:, joint, joint], centre))
        if self.training:
            self.maps = maps  # for `cascade_loss`, on the same batch
        return torch.stack(estimates, 1)

    def crops(self, x: Tensor, centre: Tensor) -> Tensor:
        """(N * J, C, CROP_PIXELS, CROP_PIXELS) the patch around each joint's estimate (N, J, 2)."""
        from torchvision.ops import roi_align

        n = len(x)
        half = self.crop / 2
        at = centre.reshape(-1, 2) + 0.5  # roi_align (aligned) puts pixel i's centre at i + 0.5
        image = torch.arange(n, device=x.device, dtype=x.dtype).repeat_interleave(self.joints)
        boxes = torch.cat([image[:, None], at - half, at + half], 1)
        return roi_align(x, boxes, CROP_PIXELS, spatial_scale=1.0, sampling_ratio=2, aligned=True)

    def cascade_loss(self, estimates: Tensor, keypoints: Tensor) -> Tensor | None:
        """What training adds to the L2 loss on the batch the last forward saw: estimates
        (N, S, J, 2) and the true keypoints (N, J, 3). It updates each refiner's spread (the
        root mean square error per axis of the stage before, over the labelled joints) and
        returns the mean cross-entropy of each stage's map against the true place (see
        `place_loss`); None, changing nothing, when this module made no training forward on
        the batch (the outputs came from a copy of it, as a time budget's probe times)."""
        if self.maps is None or len(self.maps[0][0]) != len(estimates):
            return None
        labelled = keypoints[..., 2] > 0
        counted = labelled[:, None, :, None].to(estimates.dtype)
        if counted.sum() > 0:
            errors = (estimates.detach() - keypoints[:, None, :, :2]) ** 2 * counted
            per_axis = (errors.sum((0, 2, 3)) / (2 * counted.sum())).sqrt()  # (S,)
            self.spread.lerp_(per_axis[: len(self.spread)].to(self.spread.dtype), MOMENTUM)
        size = torch.tensor([self.width, self.height], dtype=estimates.dtype, device=estimates.device)
        losses = []
        maps, self.maps = self.maps, None  # used once: holding them would keep the batch's graph alive
        for scores, centre in maps:
            if centre is None:  # stage 1: the whole image
                place, counted = (keypoints[..., :2] + 0.5) / size, labelled
            else:  # a refiner: the crop around `centre`, which may have missed the joint
                place = (keypoints[..., :2] - centre) / self.crop + 0.5
                counted = labelled & ((place >= 0) & (place <= 1)).all(-1)
            losses.append(place_loss(scores, place, counted))
        return torch.stack(losses).sum()


def place_loss(scores: Tensor, place: Tensor, counted: Tensor) -> Tensor:
    """Cross-entropy of the softmax of scores (N, J, h, w) against each joint's true place
    (N, J, 2) in [0, 1] of the map, spread over its 4 nearest cells by bilinear weights: that
    distribution's expected position is the place itself (a place beyond the outer cells'
    centres is taken at the nearest one), so the loss is least where the soft arg max is exact.
    Only the joints `counted` (N, J) count.

    This is heatmap supervision (Tompson et al. 2014) beside DeepPose's L2 loss: a map learns
    where each joint is as a classification over its cells. Measured on stick-figures, stage-1
    PCK@0.2 after 3 epochs: 0.53 with it, 0.22 with the L2 loss alone (docs/results.md)."""
    n, j, h, w = scores.shape
    at = place * torch.tensor([w, h], dtype=place.dtype, device=place.device) - 0.5  # in cells, centres at integers
    at = torch.stack([at[..., 0].clamp(0, w - 1), at[..., 1].clamp(0, h - 1)], -1)
    low = at.floor().clamp(max=torch.tensor([w - 2, h - 2], device=at.device).clamp_min(0))
    frac = at - low
    target = torch.zeros(n, j, h, w, dtype=scores.dtype, device=scores.device)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
            xi = (low[..., 0] + dx).long().clamp(max=w - 1)
            yi = (low[..., 1] + dy).long().clamp(max=h - 1)
            target.view(n, j, -1).scatter_add_(2, (yi * w + xi)[..., None], weight[..., None].to(scores.dtype))
    log_p = scores.flatten(2).log_softmax(-1)
    per_joint = -(target.flatten(2) * log_p).sum(-1)  # (N, J)
    return (per_joint * counted).sum() / counted.sum().clamp_min(1)


@register_model("deeppose", "Toshev & Szegedy 2014, DeepPose: Human Pose Estimation via Deep Neural Networks",
                (3, 96, 96), 14, 235_332, tasks=("pose",))
def deeppose(spec: ModelSpec) -> nn.Module:
    """Whole-image regressor and a refiner of crops around each joint; `num_classes` is the
    number of joints. 235,332 parameters for the 14 LSP joints, at any image size."""
    if min(spec.height, spec.width) < MIN_SIDE:
        raise CnnlabError(f"deeppose needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels; got {spec.height}x{spec.width}.")
    return DeepPose(spec.channels, spec.height, spec.width, spec.num_classes)
