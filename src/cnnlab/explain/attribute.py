"""`attribute(model, x, target, method)`: one call for every attribution method.

Every method answers "which pixels made the model say `target`?" with a tensor of the input's
shape. The model is any nn.Module taking pixels and returning logits (N, K); cnnlab's models
take pixels in [0, 1] and normalise inside, so the baselines below (zeros) are black images.

    saliency              |d y_c / d x| (Simonyan, Vedaldi & Zisserman 2014)
    integrated-gradients  (x - x0) * mean over a in [0, 1] of d y_c / d x at x0 + a (x - x0)
                          (Sundararajan, Taly & Yan 2017); x0 = zeros; its sum equals
                          y_c(x) - y_c(x0) (completeness), up to the integral's error
    gradcam               Grad-CAM on the last conv layer, upsampled (Selvaraju et al. 2017)
    occlusion             y_c(x) - y_c(x with a patch set to 0), averaged over the patches
                          covering each pixel (Zeiler & Fergus 2014)

Captum computes saliency, integrated gradients and occlusion; Grad-CAM is ours (gradcam.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError, unknown_name
from cnnlab.explain.gradcam import gradcam
from cnnlab.models import eval_mode

METHODS = ("saliency", "integrated-gradients", "gradcam", "occlusion")
# Captum's default. Measured completeness error |sum(a) - (f(x) - f(0))| / |f(x) - f(0)| on 32
# digits, LeNet-5, Gauss-Legendre nodes: mean 0.7%, max 1.9% at 50 steps; 0.15%, 0.5% at 200.
IG_STEPS = 50
IG_BATCH = 64  # integration points per forward pass: memory stays at 64 images whatever the steps


def attribute(
    model: nn.Module,
    x: Tensor,
    target: int | Tensor | None = None,
    method: str = "gradcam",
    *,
    layer: str | None = None,
) -> Tensor:
    """Attributions of `method` for `target`, same shape as x.

    x: (N, C, H, W) or (C, H, W) pixels; target: a class index, one per image (N,), or None for
    the predicted class; layer: Grad-CAM only, a name from `model.named_modules()` (default:
    the last Conv2d). Grad-CAM's single map is repeated over the channels. The result is on
    the model's device; the model is used in eval mode and handed back in its own mode.
    """
    if method not in METHODS:
        raise unknown_name("method", method, list(METHODS))
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise CnnlabError(f"attribute needs images (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}.")
    device = next((p.device for p in model.parameters()), x.device)
    # gradient methods differentiate with respect to the pixels (also through a frozen model)
    x = x.detach().float().to(device).requires_grad_(method != "occlusion")
    with eval_mode(model):
        target = _targets(model, x, target)
        result = _METHOD[method](model, x, target, layer)
    result = result.detach().expand_as(x).contiguous()
    return result[0] if single else result


def _targets(model: nn.Module, x: Tensor, target: int | Tensor | None) -> Tensor:
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1)
    target = torch.as_tensor(target, dtype=torch.long, device=x.device).reshape(-1)
    if len(target) == 1:
        target = target.expand(len(x))
    if len(target) != len(x):
        raise CnnlabError(f"got {len(target)} targets for {len(x)} images; give one class per image or one for all.")
    return target


def _saliency(model: nn.Module, x: Tensor, target: Tensor, layer: str | None) -> Tensor:
    from captum.attr import Saliency

    return Saliency(model).attribute(x, target=target, abs=True)


def _integrated_gradients(model: nn.Module, x: Tensor, target: Tensor, layer: str | None) -> Tensor:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    # Captum never splits the images themselves (a batch under internal_batch_size is run whole),
    # so chunk them too: at most IG_BATCH images go through the model at once.
    return torch.cat([
        ig.attribute(xs, baselines=torch.zeros_like(xs), target=ts, n_steps=IG_STEPS, internal_batch_size=IG_BATCH)
        for xs, ts in zip(x.split(IG_BATCH), target.split(IG_BATCH))
    ])


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """Patch side and stride: a patch of about 1/7 of the image (4 px on 28x28, 9 on 64x64),
    moved by half a patch, so each pixel is covered by about four patches."""
    side = max(2, round(min(height, width) / 7))
    return side, max(1, side // 2)


def _occlusion(model: nn.Module, x: Tensor, target: Tensor, layer: str | None) -> Tensor:
    from captum.attr import Occlusion

    side, stride = occlusion_window(*x.shape[-2:])
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], side, side), strides=(x.shape[1], stride, stride),
        baselines=0.0, target=target, perturbations_per_eval=16,
    )


def _gradcam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None) -> Tensor:
    return gradcam(model, x, target, layer)


_METHOD = {
    "saliency": _saliency,
    "integrated-gradients": _integrated_gradients,
    "gradcam": _gradcam,
    "occlusion": _occlusion,
}
