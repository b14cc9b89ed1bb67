"""Action recognition: a class per clip. Learned and scored as classification (cross-entropy;
accuracy, per-class precision/recall/F1, confusion), with what clips need on top:

- a model with two streams (`models.video.TwoStream`) has each stream's accuracy reported
  beside the fused one (`appearance_acc`, `motion_acc`), at every validation and at the test;
- its pictures are strips of frames (the most confidently wrong clips), and `cnnlab predict`
  writes each video back as an animated GIF with the predicted class written on its frames.

Works on any `nn.Module` that maps clips (N, T, C, H, W) in [0, 1] to logits (N, K).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cnnlab.files import atomic_write, atomic_write_text
from cnnlab.models import eval_mode
from cnnlab.tasks.base import register_task
from cnnlab.tasks.classify import Classify, evaluation_of

if TYPE_CHECKING:
    from cnnlab.data import Split

STRIP_FRAMES = 8  # frames shown of each clip in a strip: enough to see the motion, small enough to read
GIF_SIDE = 128  # a predicted clip is drawn at least this tall, so its label stays legible
GIF_FRAME_MS = 125  # 8 frames a second: a 16-frame clip plays in two seconds


def two_streams(model: nn.Module) -> nn.Module | None:
    """The module with a `streams(x) -> (appearance, motion)` method inside `model`, if any."""
    return next((m for m in model.modules() if callable(getattr(m, "streams", None))), None)


def stream_accuracies(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> dict[str, float]:
    """Each stream's own accuracy on clips x (N, T, C, H, W) with classes y (N,):
    {"appearance_acc", "motion_acc"}; {} for a model without two streams. The streams get what
    the two-stream module gets inside the model (the normalised clips), caught by a hook."""
    inner = two_streams(model)
    if inner is None or len(x) == 0:
        return {}
    device = next(model.parameters()).device
    seen: list[Tensor] = []
    correct = torch.zeros(2)
    handle = inner.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        with torch.inference_mode(), eval_mode(model):
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size].to(device))
                target = y[i : i + batch_size].to(device)
                correct += torch.tensor([float((s.argmax(1) == target).sum()) for s in inner.streams(seen.pop())])
    finally:
        handle.remove()
    return {"appearance_acc": correct[0].item() / len(x), "motion_acc": correct[1].item() / len(x)}


@register_task
class Video(Classify):
    name = "video"
    target = "a class per clip"

    def evaluate(self, model: nn.Module, split: Split, tta: bool = False) -> dict[str, float]:
        scores = super().evaluate(model, split, tta)
        return {**scores, **stream_accuracies(model, split.x, split.y)}

    def pictures(self, outputs: Tensor, split: Split, out: Path) -> dict[str, Path]:
        """evaluation.json, the confusion matrix and frame strips of the most confidently wrong clips."""
        import json

        from cnnlab.report import figures

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        evaluation = evaluation_of(outputs, split.y, self.classes)
        atomic_write_text(out / "evaluation.json", json.dumps(evaluation.to_dict(), indent=2) + "\n")
        wrong = evaluation.misclassified[:8]
        titles = [f"true {self.classes[int(evaluation.y_true[i])]}, predicted {self.classes[int(evaluation.y_pred[i])]} "
                  f"({float(evaluation.probs[i].max()):.2f})" for i in wrong]
        return {
            "evaluation": out / "evaluation.json",
            "confusion": figures.confusion_matrix(evaluation.confusion, self.classes, out / "confusion.png"),
            "misclassified": clip_strips(split.x[wrong], titles, out / "misclassified.png"),
        }

    def predictions(self, outputs: Tensor, size: tuple[int, int], images: list[Tensor], names: list[str],
                    out: Path) -> list[dict[str, Any]]:
        """Each clip's three likeliest classes, and the clip (`images`: (T, C, H, W) each, as
        the file shows it) as NAME.gif with the likeliest class and its probability on every frame."""
        probs = outputs.softmax(1)
        top = probs.topk(min(3, probs.shape[1]), dim=1)
        found = []
        for clip, name, values, indices in zip(images, names, top.values, top.indices, strict=True):
            label = f"{self.classes[int(indices[0])]} {float(values[0]):.2f}"
            found.append({
                "top": [{"class": self.classes[i], "probability": v} for v, i in zip(values.tolist(), indices.tolist())],
                "picture": str(annotated_gif(clip, label, Path(out) / f"{name}.gif")),
            })
        return found


def clip_strips(clips: Tensor, titles: list[str], path: Path) -> Path:
    """Clips (N, T, C, H, W) in [0, 1], one row each: STRIP_FRAMES frames at even steps, side by side."""
    from cnnlab.report.figures import pyplot, save_figure, show_pixels

    plt = pyplot()
    n = max(len(clips), 1)
    fig, axes = plt.subplots(n, 1, figsize=(1.2 * STRIP_FRAMES, 1.5 * n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, clip, title in zip(axes.flat, clips, titles, strict=False):
        take = torch.linspace(0, clip.shape[0] - 1, min(STRIP_FRAMES, clip.shape[0])).round().long()
        show_pixels(ax, torch.cat(list(clip[take]), dim=-1))  # (C, H, T' * W)
        ax.set_title(title, fontsize=8)
    return save_figure(fig, path)


def annotated_gif(clip: Tensor, label: str, path: Path) -> Path:
    """The clip (T, C, H, W) in [0, 1] as an animated GIF that loops, scaled up (nearest) to at
    least GIF_SIDE tall, with `label` written on a dark band at the top of each frame."""
    import numpy as np
    from PIL import Image, ImageDraw

    scale = max(1, -(-GIF_SIDE // clip.shape[-2]))
    frames = []
    for frame in clip.clamp(0, 1):
        rgb = (frame.expand(3, -1, -1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        image = Image.fromarray(np.ascontiguousarray(rgb)).resize((rgb.shape[1] * scale, rgb.shape[0] * scale),
                                                                  Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, image.width, 14), fill=(0, 0, 0))
        draw.text((3, 2), label, fill=(255, 255, 0))
        frames.append(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: frames[0].save(tmp, format="gif", save_all=True, append_images=frames[1:],
                                                  duration=GIF_FRAME_MS, loop=0))
    return path
