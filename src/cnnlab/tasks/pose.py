"""Pose estimation: where each body joint is, regressed as coordinates and scored by PCK and PCP.

Works on any `nn.Module` that maps pixels (N, C, H, W) in [0, 1] to joint positions in pixels
(pixel centres at integers, as the targets): (N, 2J) or (N, J, 2) for one estimate, or
(N, S, J, 2) for a cascade of S stages, each refining the one before (DeepPose's, `deeppose`).
Every stage is scored, so a cascade's gain is there to read; the last stage is the prediction.
The classes are the joint names; left and right are told apart by name (a mirror swaps them).

Targets are a `Targets` whose `keypoints` (N, J, 3) hold x, y in pixels and COCO's visibility
flag: 0 not labelled (counted nowhere), 1 labelled but hidden, 2 visible.

Loss: the squared distance of every stage's estimate of each labelled joint to the truth, in
units of the image's figure size (the diagonal of the box around its labelled joints), so a
small and a large person weigh alike: DeepPose's L2 loss on normalised coordinates (Toshev &
Szegedy 2014, eq. 4, where each stage's coordinates are normalised by its own box). In
training, a model holding a module with `cascade_loss(estimates, keypoints)` (deeppose's
cascade) adds what that returns (unless None): the training loss is then larger than the scored one.

The numbers are those DeepPose reports (section 6):

    pck20, pck05   Percentage of Correct Keypoints: the share of labelled joints whose estimate
                   is within 0.2 (0.05) of the torso diameter of the truth (the distance from
                   the left shoulder to the right hip; Toshev & Szegedy 2014, sec. 6.1); images
                   whose torso joints are not labelled count nowhere. Where the joints have no
                   such names, the diagonal of the labelled joints' box stands in for the torso.
    pcp            Percentage of Correct Parts (Ferrari et al. 2008): the share of limbs (upper
                   and lower arms and legs, the head) both of whose ends are within half the
                   limb's true length of the truth
    stageS_*       the same for stage S of a cascade (the final stage's are the plain names)
    per_class      {joint: {pck20, pck05, and stage 1's when there is a cascade}}
    per_limb       {limb: PCP}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cnnlab.data.targets import Targets, mirror_order
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, json_text
from cnnlab.tasks.base import Task, register_task

if TYPE_CHECKING:
    from cnnlab.data import Dataset, Split

THRESHOLDS = {"pck20": 0.2, "pck05": 0.05}  # shares of the torso diameter
TORSO = ("left_shoulder", "right_hip")  # DeepPose's torso diameter
PCP_SHARE = 0.5  # of the limb's length (Ferrari et al. 2008)
# Limbs by joint names, LSP's and COCO's: the sticks PCP scores (arms, legs, head) ...
LIMBS = [("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
         ("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"), ("left_wrist", "left_elbow"),
         ("left_elbow", "left_shoulder"), ("neck", "head_top")]
# ... and the rest of the skeleton drawn in the pictures: the torso's frame and COCO's face.
FRAME = [("right_shoulder", "left_shoulder"), ("right_hip", "left_hip"), ("right_shoulder", "right_hip"),
         ("left_shoulder", "left_hip"), ("neck", "right_shoulder"), ("neck", "left_shoulder"), ("nose", "left_eye"),
         ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"), ("left_ear", "left_shoulder"),
         ("right_ear", "right_shoulder")]
PICTURED = 12  # test images drawn with their skeletons
LEGIBLE = 192  # px: the side a predicted picture is enlarged to, so the skeleton reads
TRUE_COLOUR, STAGE1_COLOUR, FINAL_COLOUR = "#3cb44b", "#f58231", "#e6194b"


def limbs(names: list[str], pairs: list[tuple[str, str]] = LIMBS) -> list[tuple[int, int]]:
    """(joint, joint) index pairs of the `pairs` whose both names are among the joints."""
    return [(names.index(a), names.index(b)) for a, b in pairs if a in names and b in names]


def skeleton(names: list[str]) -> list[tuple[int, int]]:
    """The sticks the pictures draw between joints named `names`: LIMBS and FRAME."""
    return limbs(names, LIMBS + FRAME)


def torso_size(keypoints: Tensor, names: list[str]) -> Tensor:
    """(N,) the torso diameter of each image's true joints (N, J, 3); NaN where one end is not
    labelled. Joints without those names: the diagonal of the labelled joints' box instead."""
    if all(n in names for n in TORSO):
        a, b = (keypoints[:, names.index(n)] for n in TORSO)
        return torch.where((a[:, 2] > 0) & (b[:, 2] > 0), (a[:, :2] - b[:, :2]).norm(dim=1), math.nan)
    return figure_size(keypoints)


def figure_size(keypoints: Tensor) -> Tensor:
    """(N,) the diagonal of the box around each image's labelled joints (N, J, 3); NaN with fewer than 2."""
    labelled = keypoints[..., 2:] > 0
    xy = keypoints[..., :2]
    low = torch.where(labelled, xy, math.inf).amin(1)
    high = torch.where(labelled, xy, -math.inf).amax(1)
    return torch.where(labelled.sum((1, 2)) >= 2, (high - low).norm(dim=1), math.nan)


def pck(estimate: Tensor, keypoints: Tensor, torso: Tensor, share: float) -> tuple[Tensor, Tensor]:
    """(J,) correct and counted joints: an estimate (N, J, 2) is correct within `share` of the
    image's torso (N,) of the truth (N, J, 3); unlabelled joints and images without a torso count nowhere."""
    counted = (keypoints[..., 2] > 0) & torso.isfinite()[:, None]
    close = (estimate - keypoints[..., :2]).norm(dim=-1) <= share * torso[:, None]
    return (close & counted).sum(0).double(), counted.sum(0).double()


def pcp(estimate: Tensor, keypoints: Tensor, pairs: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """(L,) correct and counted limbs: a limb (a, b) is correct when both its ends' estimates are
    within PCP_SHARE of its true length of the truth; counted where both ends are labelled."""
    if not pairs:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    correct, counted = [], []
    for a, b in pairs:
        length = (keypoints[:, a, :2] - keypoints[:, b, :2]).norm(dim=1)
        ends = [(estimate[:, j] - keypoints[:, j, :2]).norm(dim=1) <= PCP_SHARE * length for j in (a, b)]
        both = (keypoints[:, a, 2] > 0) & (keypoints[:, b, 2] > 0)
        correct.append((ends[0] & ends[1] & both).sum())
        counted.append(both.sum())
    return torch.stack(correct).double(), torch.stack(counted).double()


def ratio(correct: Tensor, counted: Tensor) -> float:
    return (correct.sum() / counted.sum()).item() if counted.sum() > 0 else math.nan


@register_task
class Pose(Task):
    name = "pose"
    target = "x, y of each body joint"
    score = "pck20"
    train_metrics = ("pck20",)
    # correct and counted joints of the last stage: their ratio is PCK@0.2. A cascade's last stage
    # trains from displaced estimates (see deeppose), so its training PCK is below the scored one.
    train_sum_count = 2
    cascade: nn.Module | None = None  # see `bind`

    def bind(self, model: nn.Module) -> Pose:
        """Keep the cascade in `model`, if any (a module with `cascade_loss`): in training, the
        loss adds what it says (it also learns from the batch how far each stage's estimates are
        off, the displacements its next stage learns to correct; see cnnlab.models.deeppose)."""
        self.cascade = next((m for m in model.modules() if callable(getattr(m, "cascade_loss", None))), None)
        return self

    def stages(self, outputs: Tensor) -> Tensor:
        """Raw outputs -> (N, S, J, 2) estimates in pixels, one per stage."""
        return outputs.reshape(len(outputs), -1, len(self.classes), 2)

    def per_example_loss(self, outputs: Tensor, y: Targets) -> Tensor:
        """(N,) the mean over stages and labelled joints of the squared distance / figure size squared."""
        keypoints = y.get("keypoints").to(outputs.device)
        stages = self.stages(outputs).float()
        labelled = (keypoints[..., 2] > 0).float()[:, None]  # (N, 1, J)
        size = figure_size(keypoints).nan_to_num(1.0).clamp_min(1.0)  # too few joints: no normaliser, pixels
        squared = ((stages - keypoints[:, None, :, :2]) ** 2).sum(-1) / size[:, None, None] ** 2  # (N, S, J)
        return (squared * labelled).sum((1, 2)) / (labelled.sum((1, 2)) * stages.shape[1]).clamp_min(1)

    def loss(self, outputs: Tensor, y: Targets) -> Tensor:
        loss = self.per_example_loss(outputs, y).mean()
        if self.cascade is not None and self.cascade.training:
            extra = self.cascade.cascade_loss(self.stages(outputs).float(), y.get("keypoints").to(outputs.device))
            loss = loss if extra is None else loss + extra
        return loss

    def train_sums(self, outputs: Tensor, y: Targets) -> Tensor:
        keypoints = y.get("keypoints")
        correct, counted = pck(self.stages(outputs)[:, -1], keypoints, torso_size(keypoints, self.classes), THRESHOLDS["pck20"])
        return torch.stack([correct.sum(), counted.sum()])

    def train_summary(self, sums: list[float], seen: int) -> dict[str, float]:
        correct, counted = sums
        return {"pck20": correct / max(counted, 1)}

    def outputs(self, model: nn.Module, x: Tensor, batch_size: int = 512, tta: bool = False) -> Tensor:
        """Raw outputs; with `tta`, the mean of each image's estimates and of its mirror's, the
        mirror's mirrored back (x -> W - 1 - x) and renamed (left <-> right)."""
        if not tta:
            return super().outputs(model, x, batch_size)
        plain, mirrored = super().outputs(model, x, batch_size), super().outputs(model, x.flip(-1), batch_size)
        back = self.stages(mirrored)[:, :, mirror_order(self.classes)]
        back = torch.stack([x.shape[-1] - 1 - back[..., 0], back[..., 1]], -1)
        return (self.stages(plain) + back) / 2

    def metrics(self, outputs: Tensor, y: Targets) -> dict[str, Any]:
        """loss, pck20, pck05, pcp of the last stage; stageS_* of the others; per_class, per_limb."""
        keypoints = y.get("keypoints").to(outputs.device)
        stages, torso, pairs = self.stages(outputs), torso_size(keypoints, self.classes), limbs(self.classes)
        result: dict[str, Any] = {"loss": self.per_example_loss(outputs, y).mean().item()}  # the scored loss: L2 alone
        per_joint: dict[str, list[float]] = {}
        for s in range(stages.shape[1]):
            prefix = "" if s == stages.shape[1] - 1 else f"stage{s + 1}_"
            for key, share in THRESHOLDS.items():
                correct, counted = pck(stages[:, s], keypoints, torso, share)
                result[prefix + key] = ratio(correct, counted)
                if prefix in ("", "stage1_"):
                    per_joint[prefix + key] = torch.where(counted > 0, correct / counted.clamp_min(1), math.nan).tolist()
            correct, counted = pcp(stages[:, s], keypoints, pairs)
            result[prefix + "pcp"] = ratio(correct, counted)
        result["per_class"] = {name: {k: v[j] for k, v in per_joint.items()} for j, name in enumerate(self.classes)}
        correct, counted = pcp(stages[:, -1], keypoints, pairs)
        result["per_limb"] = {f"{self.classes[a]}-{self.classes[b]}": (c / n).item() if n > 0 else math.nan
                              for (a, b), c, n in zip(pairs, correct, counted, strict=True)}
        return result

    def decode(self, outputs: Tensor) -> Tensor:
        """Raw outputs -> (N, J, 2) the last stage's estimates, x, y in pixels."""
        return self.stages(outputs)[:, -1]

    def check_outputs(self, outputs: Tensor, data: Dataset) -> None:
        per_image = outputs[0].numel() if len(outputs) else 0
        if per_image == 0 or per_image % (2 * data.num_classes):
            raise CnnlabError(
                f"your model outputs shape {tuple(outputs.shape)} but {data.name} needs x, y of its {data.num_classes} "
                f"joints: (N, {2 * data.num_classes}), (N, {data.num_classes}, 2) or a cascade's (N, stages, {data.num_classes}, 2)."
            )

    def pictures(self, outputs: Tensor, split: Split, out: Path) -> dict[str, Path]:
        """evaluation.json (the metrics) and skeletons.png: the first test images with the true
        skeleton, stage 1's and the final one side by side."""
        from cnnlab.report import image_grid

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "evaluation.json", json_text({**self.metrics(outputs, split.y), "classes": self.classes}))
        stages = self.stages(outputs)[:PICTURED]
        keypoints = split.y.get("keypoints")[:PICTURED].cpu()
        columns = [("true", keypoints[..., :2], TRUE_COLOUR), ("stage 1", stages[:, 0], STAGE1_COLOUR)]
        if stages.shape[1] > 1:
            columns.append((f"final (stage {stages.shape[1]})", stages[:, -1], FINAL_COLOUR))
        panels, titles = [], []
        for i, image in enumerate(split.x[:PICTURED].cpu()):
            for title, joints, colour in columns:
                panels.append(draw_skeleton(image, joints[i], self.classes, colour, keypoints[i, :, 2] > 0))
                titles.append(title)
        grid = image_grid(torch.stack(panels), titles, out / "skeletons.png", columns=2 * len(columns))
        return {"evaluation": out / "evaluation.json", "skeletons": grid}

    def predictions(self, outputs: Tensor, size: tuple[int, int], images: list[Tensor], names: list[str],
                    out: Path) -> list[dict[str, Any]]:
        """Each image's joints {name: [x, y]} in its own pixels (the last stage's), and the image
        with its skeleton drawn (NAME-pose.png, enlarged to about LEGIBLE pixels when smaller)."""
        from cnnlab.report import save_png

        h, w = size
        found = []
        for joints, image, name in zip(self.decode(outputs), images, names, strict=True):
            height, width = image.shape[1:]
            # pixel centres at integers: the centre of input pixel i is at (i + 0.5) / w of the image
            at = (joints + 0.5) * torch.tensor([width / w, height / h]) - 0.5
            scale = max(1, LEGIBLE // max(height, width))
            big = torch.nn.functional.interpolate(image[None], scale_factor=scale, mode="nearest")[0]
            picture = draw_skeleton(big, (at + 0.5) * scale - 0.5, self.classes, FINAL_COLOUR)
            found.append({"joints": {n: xy for n, xy in zip(self.classes, at.tolist(), strict=True)},
                          "picture": str(save_png(picture, Path(out) / f"{name}-pose.png"))})
        return found


def draw_skeleton(image: Tensor, joints: Tensor, names: list[str], colour: str, shown: Tensor | None = None) -> Tensor:
    """image (C, H, W) in [0, 1] with the skeleton of joints (J, 2) drawn over it by
    `torchvision.utils.draw_keypoints`, limbs joining the joints `shown` (J,) bool (default all)
    -> (3, H, W) in [0, 1]."""
    from torchvision.utils import draw_keypoints

    rgb = (image.expand(3, -1, -1).clamp(0, 1) * 255).round().to(torch.uint8)
    visible = torch.ones(len(joints), dtype=torch.bool) if shown is None else shown.bool()
    width = max(1, image.shape[-1] // 96)
    drawn = draw_keypoints(rgb, joints.float()[None], connectivity=skeleton(names), colors=colour,
                           radius=width + 1, width=width, visibility=visible[None])
    return drawn.float() / 255

