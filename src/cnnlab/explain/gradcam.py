"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", eq. 1-2).

A^k: the K maps of a convolution layer; alpha_k = mean over (i, j) of d y_c / d A^k_ij, how much
map k matters to class c; the map is ReLU(sum_k alpha_k A^k), kept positive because we want what
speaks *for* the class. It has the layer's resolution (7x7 for LeNet's last conv on 28x28, 2x2
for ResNet-18 at 64x64) and is upsampled bilinearly to the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models import find_layer, recording


def gradcam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """x: (N, C, H, W), target: (N,) class indices -> (N, 1, H, W) maps, >= 0.

    `layer`: a name from `model.named_modules()`; None = the last Conv2d. Our own hooks (not
    Captum's LayerGradCam) so that a wrong layer is an error that names it."""
    name, module = find_layer(model, layer, hint=" to explain; name one with --layer (layer=...)")
    with recording([(name, module)]) as seen:
        logits = model(x)  # (N, K)
    maps = seen[name]  # (N, K', h, w); still in the graph
    if not isinstance(maps, Tensor) or not maps.requires_grad:
        raise CnnlabError(
            f"layer '{name}' gives no gradient (its output is detached or not a tensor); choose another layer."
        )
    score = logits.gather(1, target[:, None]).sum()
    (grads,) = torch.autograd.grad(score, maps)  # (N, K', h, w)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (N, K', 1, 1)
    cam = F.relu((alpha * maps).sum(1, keepdim=True)).detach()  # (N, 1, h, w)
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
