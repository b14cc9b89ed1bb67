"""Generation: a generator learns to draw images like the training set's, against a
discriminator that learns to tell its images from real ones (Goodfellow et al. 2014,
"Generative Adversarial Nets"), the two trained in turn inside the one training loop.

Works on a model holding a `generator` (z (N, latent) [, classes (N,)] -> pixels in [0, 1])
and a `discriminator`, whose forward pass is the discriminator's: (N, K) logits of "real",
one per class for a conditional model (`cnnlab.models.dcgan`). Targets are the dataset's
classes, read only by a conditional model; any image dataset serves.

Each step of `fit` (`AdversarialTraining.step`), on a batch x of real images:
1. z ~ N(0, 1) from the run's own latent generator (saved in checkpoints), fake = G(z);
2. the discriminator's update, by its own Adam: loss_D = BCE(D(x), 1) + BCE(D(fake), 0);
3. the generator's loss against the updated D, the non-saturating one (Goodfellow et al.
   2014, section 3): loss_G = BCE(D(fake), 1), returned to the loop, which backpropagates it
   and steps the run's optimizer, whose parameters are the generator's alone. D's weights are
   frozen while this loss is built: its backward pass then skips their gradients (unused; 2-13%
   of a width-32 step in timings), and G's gradients are the same to the bit.
Both Adams take beta1 = 0.5 (Radford et al. 2016: 0.9 oscillated). The loop's `loss` is the
generator's; the task sums d_loss, d_real = mean D(x) and d_fake = mean D(G(z)) (as
probabilities): D(x) near 1 and D(G(z)) near 0 is a discriminator that wins.

Validation each epoch is cheap: D's numbers on the split and on images of fixed latent vectors,
and the sliced Wasserstein distance between those images and the split's in pixel space (Rabin
et al. 2011; Karras et al. 2018 measure GANs by it), whose negation picks the best epoch. The
images of the fixed vectors are also kept, a grid per epoch (`end_of_epoch`). The real
measures, in a classifier's feature space, are `cnnlab.generate.measures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, file_sha256, json_text
from cnnlab.models import eval_mode
from cnnlab.tasks.base import Target, Task, register_task

if TYPE_CHECKING:
    from cnnlab.config import TrainConfig
    from cnnlab.data import Dataset, Split

ADAM_BETAS = (0.5, 0.999)  # Radford et al. 2016, section 4: beta1 0.9 "resulted in training oscillation"
FIXED_SEED = 20160107  # the latent vectors of every epoch's grid and validation (the DCGAN paper's arXiv date)
GRID_COLUMNS = 8
VALIDATION_IMAGES = 512  # real and generated images compared each epoch (SWD); enough for 0.002 steadiness
PROJECTIONS = 128  # random directions of the sliced Wasserstein distance
EPOCH_GRIDS = "generate/epochs"  # where in the run each epoch's grid goes (epoch-NNN.png)


def find_gan(model: nn.Module) -> nn.Module:
    """The module in `model` that holds a `generator` and a `discriminator`."""
    for module in model.modules():
        if isinstance(getattr(module, "generator", None), nn.Module) and isinstance(getattr(module, "discriminator", None), nn.Module):
            return module
    raise CnnlabError(f"{type(model).__name__} holds no generator and discriminator; choose a generative model "
                      "such as dcgan or cdcgan (`cnnlab models`).")


def latent(n: int, size: int, seed: int, start: int = 0) -> Tensor:
    """Latent vectors start .. start + n - 1 of `seed` (N, size) from N(0, 1): vector i is the
    same whatever n, so one image of a grid can be drawn again alone."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(start + n, size, generator=g)[start:]


def pick(scores: Tensor, labels: Tensor | None) -> Tensor:
    """(N, K) discriminator logits -> (N,): the score of each image's class, or the one score."""
    return scores[:, 0] if labels is None else scores.gather(1, labels[:, None])[:, 0]


def grid_labels(num_classes: int, n: int) -> Tensor | None:
    """The classes asked of a grid of n images: a class per row of GRID_COLUMNS (cycling)."""
    return None if not num_classes else (torch.arange(n) // GRID_COLUMNS) % num_classes


def generate(model: nn.Module, z: Tensor, labels: Tensor | None = None, batch_size: int = 256) -> Tensor:
    """Images (N, C, H, W) in [0, 1] of latent vectors z (N, latent) [and classes (N,)], in
    eval mode (BatchNorm's running statistics), batch by batch, on the CPU."""
    gan = find_gan(model)
    device = next(gan.parameters()).device
    if gan.num_classes and labels is None:
        raise CnnlabError("this generator draws the classes it is asked for; give one per image.")
    out = []
    with torch.inference_mode(), eval_mode(gan):
        for i in range(0, len(z), batch_size):
            y = labels[i : i + batch_size].to(device) if gan.num_classes else None  # type: ignore[index]
            out.append(gan.generator(z[i : i + batch_size].to(device), y).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def tile(images: Tensor, columns: int = GRID_COLUMNS) -> Tensor:
    """Images (N, C, H, W) side by side, `columns` a row, 2 px of black between -> (C, H', W')."""
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=columns, padding=2, pad_value=0.0)
    return grid[:1] if images.shape[1] == 1 else grid  # make_grid repeats a grey channel into RGB


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = PROJECTIONS, seed: int = FIXED_SEED) -> float:
    """Sliced Wasserstein-2 distance between two equal-size sets of images (N, ...) (Rabin,
    Peyre, Delon & Bernot 2011): the root mean, over random unit directions, of the mean
    squared difference of the sorted projections of the two sets."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    g = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64), dim=0)
    pa, pb = (a @ directions).sort(0).values, (b @ directions).sort(0).values
    return (pa - pb).square().mean().sqrt().item()


@register_task
class Generate(Task):
    name = "generate"
    target = "none (the images alone; a class for a conditional model)"
    score = "neg_swd"
    train_metrics = ("d_loss", "d_real", "d_fake")
    serves_any_images = True  # needs no targets: every image dataset can be learned

    def bind(self, model: nn.Module) -> Generate:
        self.gan = find_gan(model)
        return self

    def own_training(self, model: nn.Module, cfg: TrainConfig, device: torch.device) -> AdversarialTraining:
        if cfg.nproc > 1 or cfg.dp:
            raise CnnlabError("a GAN trains in one process without DP-SGD here; drop --nproc and --dp.")
        return AdversarialTraining(model, find_gan(model), cfg.lr, cfg.seed, device)

    def train_sums(self, outputs: Tensor, y: Target) -> Tensor:
        """outputs (N, 3) of the step: loss_D (the batch's, on every row), D(x), D(G(z))."""
        return outputs.sum(0).to(torch.float64)

    def evaluate(self, model: nn.Module, split: Split, tta: bool = False) -> dict[str, float]:
        """loss (the generator's, on the fixed latent vectors), d_real and d_fake (mean D on the
        split's images and on theirs), swd (pixels) and neg_swd."""
        n = min(len(split), VALIDATION_IMAGES)
        if n < 2:
            return {"loss": float("nan"), "d_real": float("nan"), "d_fake": float("nan"), "swd": float("nan"),
                    self.score: float("nan")}
        gan = find_gan(model)
        labels = self._labels(split)[:n] if gan.num_classes else None  # the split's classes, in its shares
        real = split.x[:n].cpu()
        fake = generate(model, latent(n, gan.latent, FIXED_SEED), labels)
        real_scores = pick(self.outputs(model, real), labels)
        fake_scores = pick(self.outputs(model, fake), labels)
        swd = sliced_wasserstein(real, fake)
        return {
            "loss": F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores)).item(),
            "d_real": real_scores.sigmoid().mean().item(),
            "d_fake": fake_scores.sigmoid().mean().item(),
            "swd": swd,
            self.score: -swd,
        }

    def _labels(self, split: Split) -> Tensor:
        if not torch.is_tensor(split.y):
            raise CnnlabError("a conditional generator learns classes, and this dataset's targets are not one class per image.")
        return split.y.cpu()

    def decode(self, outputs: Tensor) -> Tensor:
        """(N, K) logits -> (N, K) the discriminator's probability that each image is real."""
        return outputs.sigmoid()

    def check_model(self, model: nn.Module, data: Dataset) -> None:
        gan = self.bind(model).gan
        if gan.num_classes:
            self._labels(data.train)
        super().check_model(model, data)

    def check_outputs(self, outputs: Tensor, data: Dataset) -> None:
        k = self.gan.num_classes or 1
        if outputs.ndim != 2 or outputs.shape[1] != k:
            raise CnnlabError(f"your discriminator outputs shape {tuple(outputs.shape)} but needs (N, {k}) logits of 'real'.")

    def end_of_epoch(self, model: nn.Module, epoch: int, run: Path, weights: Path) -> None:
        """RUN/generate/epochs/epoch-NNN.png: the images of the same fixed latent vectors after
        every epoch, marked with the weights just saved."""
        from cnnlab.report.marks import save_marked_png

        gan = find_gan(model)
        n = GRID_COLUMNS * (gan.num_classes or GRID_COLUMNS)
        images = generate(model, latent(n, gan.latent, FIXED_SEED), grid_labels(gan.num_classes, n))
        save_marked_png(tile(images), run / EPOCH_GRIDS / f"epoch-{epoch:03d}.png", run.name, file_sha256(weights),
                        FIXED_SEED, [0, n - 1])

    def pictures(self, outputs: Tensor, split: Split, out: Path) -> dict[str, Path]:
        """evaluation.json: the discriminator's mean probability of "real" on the split (from
        `outputs`, its logits there), over all and per class, and the pixel SWD between the split
        and the fixed latent vectors' images. The images themselves, marked, come from `cnnlab generate`."""
        n = min(len(split), VALIDATION_IMAGES)
        labels = self._labels(split) if torch.is_tensor(split.y) else None
        fake = generate(self.gan, latent(n, self.gan.latent, FIXED_SEED), labels[:n] if self.gan.num_classes else None)  # type: ignore[index]
        real = pick(outputs, labels if self.gan.num_classes else None).sigmoid()
        swd = sliced_wasserstein(split.x[:n].cpu(), fake)
        per_class = {} if labels is None else {c: real[labels == k].mean().item() if (labels == k).any() else None
                                               for k, c in enumerate(self.classes)}
        numbers = {self.score: -swd, "swd": swd, "d_real": real.mean().item(), "n": n,
                   "per_class": per_class}  # D(x): the discriminator's mean probability that each class's images are real
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "evaluation.json", json_text(numbers))
        return {"evaluation": out / "evaluation.json"}

    def predictions(self, outputs: Tensor, size: tuple[int, int], images: list[Tensor], names: list[str],
                    out: Path) -> list[dict[str, Any]]:
        """The discriminator's probability that each image is real (for a conditional model:
        real as each class)."""
        probs = self.decode(outputs)
        if probs.shape[1] == 1:
            return [{"real": p[0]} for p in probs.tolist()]
        return [{"real": dict(zip(self.classes, p, strict=True))} for p in probs.tolist()]


class AdversarialTraining:
    """The discriminator's half of each step, with its optimizer and the latent generator:
    what `fit` runs as the step of a generation run, and what its checkpoints hold beside the
    run's own optimizer (`state_dict`)."""

    adam_betas = ADAM_BETAS

    def __init__(self, model: nn.Module, gan: nn.Module, lr: float, seed: int, device: torch.device) -> None:
        self.model, self.gan, self.device = model, gan, device
        self.trained = gan.generator  # what the run's optimizer steps with the loss `step` returns
        self.optimizer = torch.optim.Adam(gan.discriminator.parameters(), lr=lr, betas=ADAM_BETAS)
        self.latent_rng = torch.Generator().manual_seed(seed + 2)  # +1 is the augmentation's

    def step(self, x: Tensor, y: Target, groups: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Update D on x and G(z); return G's loss against the updated D and (N, 3) numbers:
        loss_D, D(x), D(G(z)) (see the module's docstring)."""
        labels = y if self.gan.num_classes else None
        if labels is not None and not torch.is_tensor(labels):
            raise CnnlabError("a conditional generator learns a class per image, and this dataset's targets are "
                              "boxes or masks; train a dcgan on it instead.")
        z = torch.randn(len(x), self.gan.latent, generator=self.latent_rng).to(self.device)
        fake = self.gan.generator(z, labels)
        real_scores, fake_scores = pick(self.model(x), labels), pick(self.model(fake.detach()), labels)
        d_loss = (F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
                  + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores)))
        self.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizer.step()
        discriminator = self.gan.discriminator
        discriminator.requires_grad_(False)  # G's loss needs D's gradients for its input, not for its weights
        try:
            g_scores = pick(self.model(fake), labels)
        finally:
            discriminator.requires_grad_(True)
        g_loss = F.binary_cross_entropy_with_logits(g_scores, torch.ones_like(g_scores))
        numbers = torch.stack([d_loss.detach().expand(len(x)), real_scores.detach().sigmoid(), fake_scores.detach().sigmoid()], 1)
        return g_loss, numbers

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "latent_rng": self.latent_rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.latent_rng.set_state(state["latent_rng"])
