"""What a trained CNN learned: its first-layer filters, and every conv layer's feature maps.

Filters are the first convolution's weights (C_out, C_in, k, k) drawn as small pictures (the
figure of Krizhevsky et al. 2012, fig. 3); feature maps are each conv layer's output for one
image (the activations whose patterns Zeiler & Fergus 2014, Visualizing and Understanding
Convolutional Networks, study). Works on any nn.Module with Conv2d layers; the files go to
RUN/inside/.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from cnnlab.files import slug
from cnnlab.models import eval_mode, first_layer, layers_of, recording

INSIDE = "inside"
FILTERS = "filters.png"
FEATURE_MAPS = "feature-maps-"  # + image name: one folder per image


NO_CONV = ", so it has no filters or feature maps to show"


@torch.no_grad()
def feature_maps(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """x: (C, H, W) pixels in [0, 1] -> {conv layer name: its output (C_out, H', W')}, in order.

    Copies of the outputs, recorded before the ReLU after a conv (which may work in place)."""
    layers = layers_of(model, nn.Conv2d, hint=NO_CONV)
    with eval_mode(model), recording(layers, copy=True) as maps:
        model(x.unsqueeze(0).to(next(model.parameters()).device))
    return {name: maps[name][0].cpu() for name, _ in layers if name in maps}


def save_filters(model: nn.Module, folder: Path) -> tuple[Path, dict[str, object]]:
    """The first conv layer's kernels as a grid PNG in `folder`; returns the path and what it shows."""
    from cnnlab.inside.figures import filters_figure

    name, conv = first_layer(model, nn.Conv2d, hint=NO_CONV)
    w = conv.weight.detach().cpu()
    k = "x".join(map(str, w.shape[2:]))
    path = filters_figure(w, f"{name}: {w.shape[0]} filters of {w.shape[1]}x{k}", Path(folder) / FILTERS)
    return path, {"layer": name, "shape": list(w.shape), "min": float(w.min()), "max": float(w.max())}


def save_feature_maps(model: nn.Module, x: Tensor, image_name: str, folder: Path) -> list[dict[str, object]]:
    """One PNG per conv layer (input beside its maps) in folder/feature-maps-IMAGE/."""
    from cnnlab.inside.figures import feature_maps_figure

    target = Path(folder) / f"{FEATURE_MAPS}{slug(image_name)}"
    shown = []
    for k, (name, maps) in enumerate(feature_maps(model, x).items()):
        shape = "x".join(map(str, maps.shape))
        title = f"{name}: output {shape} (before its activation) for {image_name}"
        path = feature_maps_figure(x, maps, title, target / f"{k:02d}-{slug(name)}.png")
        shown.append({"layer": name, "shape": list(maps.shape), "file": str(path)})
    return shown
