"""Images from a trained generator, every PNG marked (`cnnlab.report.marks`).

`sample_images(run, n, cls, seed)` draws latent vectors 0 .. n-1 of `seed` (vector i the same
whatever n, so each single PNG can be drawn again from its mark) and their images;
`write_samples` saves them as a grid and as single PNGs, and `interpolation` walks the latent
space between two vectors: a generator that learned something smooth changes the picture
gradually, not by jumps (Radford et al. 2016, section 6.1, "walking in the latent space").
`training_animation` turns the grids of fixed latent vectors saved after each epoch into an
animated GIF of training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write, file_sha256
from cnnlab.report.marks import save_marked_png
from cnnlab.run import WEIGHTS, Run
from cnnlab.tasks.generate import EPOCH_GRIDS, find_gan, generate, latent, tile

MAX_IMAGES = 10_000  # per command: 10,000 Fashion-MNIST-sized PNGs are ~10 MB
STRIP = 10  # images in an interpolation strip, both ends included
STRIPS = 8  # interpolation strips written by --interpolate


def require_generator(run: Run) -> None:
    if run.task.name != "generate":
        raise CnnlabError(f"run {run.name} learned the {run.task.name} task; images come from a generate run "
                          "(`cnnlab train --model dcgan ...`).")


def class_index(run: Run, cls: str | None) -> int | None:
    """The index of class `cls` (a name or an index) of a conditional run; None for none asked."""
    gan = find_gan(run.model)
    if cls is None:
        return None
    if not gan.num_classes:
        raise CnnlabError(f"run {run.name} trained an unconditional generator ({run.config.model}); it draws no chosen class, "
                          "drop --class or train a cdcgan.")
    if cls in run.classes:
        return run.classes.index(cls)
    if cls.isdigit() and int(cls) < len(run.classes):
        return int(cls)
    raise CnnlabError(f"class '{cls}' is not one of run {run.name}'s: {', '.join(run.classes)}.")


def labels_for(run: Run, n: int, cls: int | None) -> Tensor | None:
    """The class of each of n images: `cls`, or for a conditional run asked none, the classes in turn."""
    if not find_gan(run.model).num_classes:
        return None
    return torch.full((n,), cls) if cls is not None else torch.arange(n) % len(run.classes)


def sample_images(run: Run, n: int, cls: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """n images (N, C, H, W) in [0, 1] of latent vectors 0 .. n-1 of `seed`, and their classes."""
    if not 1 <= n <= MAX_IMAGES:
        raise CnnlabError(f"-n must be from 1 to {MAX_IMAGES:,} images, got {n}.")
    labels = labels_for(run, n, cls)
    return generate(run.model, latent(n, find_gan(run.model).latent, seed), labels), labels


@dataclass
class Samples:
    run: str
    seed: int
    n: int
    cls: str | None
    files: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "seed": self.seed, "n": self.n, "class": self.cls, "files": self.files}


def write_samples(run: Run, out: str | Path, n: int = 64, cls: str | None = None, seed: int = 0,
                  interpolate: bool = False) -> Samples:
    """OUT/grid.png (all n images), OUT/images/NNNNN.png (one each) and with `interpolate`
    OUT/interpolation.png (STRIPS strips of STRIP images from vector 2i to vector 2i+1) with
    each strip also alone (OUT/interpolation-I.png); every PNG marked with the run, the SHA-256
    of its weights, the seed and its latent index."""
    require_generator(run)
    out = Path(out)
    k = class_index(run, cls)
    images, _ = sample_images(run, n, k, seed)
    weights = file_sha256(run.path / WEIGHTS)
    mark = {"run": run.name, "weights_sha256": weights, "seed": seed}
    result = Samples(run.name, seed, n, None if k is None else run.classes[k])
    result.files["grid"] = str(save_marked_png(tile(images), out / "grid.png", latent_index=[0, n - 1], **mark))
    singles = [save_marked_png(image, out / "images" / f"{i:05d}.png", latent_index=i, **mark) for i, image in enumerate(images)]
    result.files["images"] = str(out / "images")
    result.files["count"] = len(singles)
    if interpolate:
        result.files |= write_interpolations(run, out, k, seed, mark)
    return result


def interpolation(run: Run, start: Tensor, end: Tensor, cls: int | None, steps: int = STRIP) -> Tensor:
    """`steps` images (N, C, H, W) from latent vector `start` to `end` (both included), by
    spherical interpolation: z of a Gaussian concentrates near a sphere, where a straight line's
    middle is not (White 2016, "Sampling Generative Networks")."""
    t = torch.linspace(0, 1, steps)[:, None]
    omega = torch.arccos((start / start.norm() * end / end.norm()).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:  # the same direction: a straight line is the arc
        z = (1 - t) * start + t * end
    else:
        z = (torch.sin((1 - t) * omega) * start + torch.sin(t * omega) * end) / torch.sin(omega)
    return generate(run.model, z, labels_for(run, steps, cls))


def write_interpolations(run: Run, out: Path, cls: int | None, seed: int, mark: dict[str, Any]) -> dict[str, Any]:
    gan = find_gan(run.model)
    z = latent(2 * STRIPS, gan.latent, seed)
    strips = [interpolation(run, z[2 * i], z[2 * i + 1], cls) for i in range(STRIPS)]
    files: dict[str, Any] = {"interpolation": str(save_marked_png(tile(torch.cat(strips), STRIP), out / "interpolation.png",
                                                                  latent_index=[0, 2 * STRIPS - 1], **mark))}
    files["strips"] = [str(save_marked_png(tile(s, STRIP), out / f"interpolation-{i}.png", latent_index=[2 * i, 2 * i + 1], **mark))
                       for i, s in enumerate(strips)]
    return files


def epoch_grids(run: Run) -> list[Path]:
    """The grids of fixed latent vectors saved after each epoch, in order."""
    return sorted((run.path / EPOCH_GRIDS).glob("epoch-*.png"))


def training_animation(run: Run, path: str | Path | None = None, frame_ms: int = 600) -> Path | None:
    """An animated GIF of the epoch grids (RUN/generate/training.gif by default), the last
    frame held 3x longer; None before any epoch ended. A GIF carries no mark: it is a picture
    of training, not an image handed out as a sample."""
    from PIL import Image

    grids = epoch_grids(run)
    if not grids:
        return None
    path = Path(path or run.path / "generate" / "training.gif")
    frames = []
    for g in grids:
        with Image.open(g) as image:
            frames.append(image.convert("L" if image.mode == "L" else "RGB").copy())
    durations = [frame_ms] * (len(frames) - 1) + [3 * frame_ms]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: frames[0].save(tmp, format="gif", save_all=True, append_images=frames[1:],
                                                 duration=durations, loop=0))
    return path

