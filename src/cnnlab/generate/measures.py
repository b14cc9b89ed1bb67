"""How good a generator is, measured without downloading anything: in the feature space of a
cnnlab classifier run (`feature_run`), not Inception's.

- classifier-FID: the Frechet distance between Gaussians fitted to the features of generated
  and real images (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge
  to a Local Nash Equilibrium", eq. 6), computed by torchmetrics with the classifier's
  penultimate layer (the input of its last linear layer) as the feature module. It is NOT
  comparable with the FID papers report: those use Inception-v3 features of ImageNet.
- KID: the squared maximum mean discrepancy with a cubic polynomial kernel (Binkowski et al.
  2018, "Demystifying MMD GANs"), unbiased, mean and std over random subsets (torchmetrics).
- precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models"): the share of generated images inside the real images' k-NN
  balls (quality) and of real images inside the generated images' balls (variety), k = 3.
- the floor: each number for real against real (train images against test images), the value
  a perfect generator would get with as many images: FID of finite sets is never 0.
- class coverage: the share of each class among the samples as the classifier labels them;
  a generator that collapsed onto a few modes leaves classes out. For a conditional generator,
  the share of samples labelled as the class they were asked for.

Generated and real sets hold the same number of images, the test images are the reference of
both the generated set and the floor.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.generate.sample import labels_for, require_generator, sample_images
from cnnlab.models import eval_mode, last_layer, recording
from cnnlab.run import Run
from cnnlab.tasks.generate import find_gan, generate, latent

K_NEAREST = 3  # Kynkaanniemi et al. 2019, section 3: k = 3 balances the two against outliers
KID_SUBSETS = 50
NOTE = ("classifier-FID is a Frechet distance in the feature space of the cnnlab classifier named; it is not "
        "comparable with the Inception-FID of papers.")


def feature_layer(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier's last linear layer: its input is the penultimate features measured in."""
    return last_layer(model, nn.Linear, hint=", so it has no penultimate features to measure images in")  # type: ignore[return-value]


def features_and_labels(model: nn.Module, x: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """Penultimate features (N, F) and predicted classes (N,) of images x in [0, 1], batch by batch."""
    layer = feature_layer(model)
    feats, preds = [], []
    with torch.no_grad(), eval_mode(model), recording([layer], inputs=True, copy=True) as seen:
        for i in range(0, len(x), batch_size):
            preds.append(model(x[i : i + batch_size]).argmax(1))
            feats.append(seen[layer[0]].flatten(1))
    return torch.cat(feats).double(), torch.cat(preds)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID of two feature sets (N, F) by torchmetrics. Its `feature` module is the identity: the
    sets are embedded once (features_and_labels) and shared by every measure."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Identity(real.shape[1]), normalize=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return fid.compute().item()


def kernel_distance(real: Tensor, fake: Tensor, seed: int) -> tuple[float, float]:
    """KID (mean, std over KID_SUBSETS subsets of half the images) by torchmetrics; the subsets
    are drawn from `seed`, leaving the caller's random state alone."""
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # "will save all extracted features": two sets of n features, meant
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        kid = KernelInceptionDistance(feature=_Identity(real.shape[1]), subsets=KID_SUBSETS,
                                      subset_size=max(2, min(len(real), len(fake)) // 2), normalize=True)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return mean.item(), std.item()


class _Identity(nn.Module):
    """Features in, features out: the feature module torchmetrics calls on sets already embedded."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def precision_recall(real: Tensor, fake: Tensor, k: int = K_NEAREST) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019, eq. 1-3: a sample is inside a set's manifold when it lies within
    the distance from some member of the set to that member's k-th nearest neighbour in the set."""
    def radii(x: Tensor) -> Tensor:
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # +1: each point is its own nearest

    def inside(points: Tensor, of: Tensor) -> float:
        return (torch.cdist(points, of) <= radii(of)[None, :]).any(1).double().mean().item()

    return inside(fake, real), inside(real, fake)


def compare(real: Tensor, other: Tensor, seed: int) -> dict[str, float]:
    fid = frechet_distance(real, other)
    kid, kid_std = kernel_distance(real, other, seed)
    precision, recall = precision_recall(real, other)
    return {"classifier_fid": fid, "kid": kid, "kid_std": kid_std, "precision": precision, "recall": recall}


def measure(run: Run, feature_run: Run, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every measure above for n images generated by `run` (latent vectors 0 .. n-1 of `seed`)
    against n test images of its dataset, and the floor: n training images against the same
    test images. Saved as RUN/generate/measures.json."""
    require_generator(run)
    feature_run.require_classifier("measuring generated images")
    feature_run.check_fits(run.input_shape, None, f"run {run.name}'s images")
    if feature_run.classes != run.classes:
        raise CnnlabError(f"run {feature_run.name} tells apart other classes than run {run.name}'s dataset has; "
                          "measure a generator with a classifier trained on its own dataset.")
    data = run.load_data()
    if min(len(data.train), len(data.test)) < n or n < 2 * K_NEAREST:
        raise CnnlabError(f"--n {n} needs at least that many training and test images (and at least {2 * K_NEAREST}); "
                          f"{data.name} has {len(data.train):,} and {len(data.test):,}.")
    gan = find_gan(run.model)
    fake, asked = sample_images(run, n, None, seed)
    g = torch.Generator().manual_seed(seed)
    train_x = data.train.x[torch.randperm(len(data.train), generator=g)[:n]]
    test_x = data.test.x[torch.randperm(len(data.test), generator=g)[:n]]
    model, layer = feature_run.model, feature_layer(feature_run.model)[0]
    (test_f, _), (train_f, _), (fake_f, fake_pred) = (features_and_labels(model, x) for x in (test_x, train_x, fake))
    generated, floor = compare(test_f, fake_f, seed), compare(test_f, train_f, seed)
    classes = feature_run.classes
    shares = torch.bincount(fake_pred, minlength=len(classes)).double() / n
    result: dict[str, Any] = {
        "run": run.name, "feature_run": feature_run.name, "features": f"input of {layer} ({test_f.shape[1]} numbers)",
        "n": n, "seed": seed, "note": NOTE,
        **generated, **{f"{k}_floor": v for k, v in floor.items()},
        "fid_over_floor": generated["classifier_fid"] / floor["classifier_fid"] if floor["classifier_fid"] > 0 else math.inf,
        "class_shares": dict(zip(classes, shares.tolist(), strict=True)),
        "min_class_share": shares.min().item(),
        "conditional_accuracy": None,
    }
    if gan.num_classes:
        asked = labels_for(run, n, None)
        result["conditional_accuracy"] = (fake_pred == asked).double().mean().item()
    result["fid_by_epoch"] = fid_by_epoch(run, model, test_f, n, seed)
    run.save_result("generate/measures", result)
    return result


def fid_by_epoch(run: Run, classifier: nn.Module, reference: Tensor, n: int, seed: int) -> list[dict[str, float]]:
    """classifier-FID of the weights of each epoch that training kept (`--keep-checkpoints`),
    with the same latent vectors and reference features: how it changed while the run trained."""
    from cnnlab.files import load_weights, read_weights

    model = copy.deepcopy(run.model)
    gan = find_gan(model)
    curve = []
    for file in sorted((run.path / "checkpoints").glob("epoch-*.safetensors")):
        state, meta = read_weights(file)
        load_weights(model, state, str(file))
        fake = generate(model, latent(n, gan.latent, seed), labels_for(run, n, None))
        curve.append({"epoch": int(meta.get("epoch", file.stem.split("-")[1])),
                      "classifier_fid": frechet_distance(reference, features_and_labels(classifier, fake)[0])})
    return curve
