"""Pruning a trained run: zero the smallest weights, or cut whole channels out, then fine-tune.

- Unstructured (Han et al. 2015, "Learning both Weights and Connections for Efficient Neural
  Networks"): global magnitude pruning with `torch.nn.utils.prune.global_unstructured` (L1):
  the `amount` share of all convolution and linear weights with the smallest |w|, ranked over
  the whole network, becomes 0. The masks are made permanent at once (`prune.remove`) and the
  fine-tuning keeps them at 0 by masking their gradients, so the saved state is the plain
  model's (no weight_orig / weight_mask pairs) and its shapes do not change: the file and the
  FLOPs stay the same size, only sparse kernels would gain from the zeros.
- Structured (Li et al. 2017, "Pruning Filters for Efficient ConvNets", section 3.1): in every
  convolution that feeds another layer, the `amount` share of its filters with the smallest
  L1 norm is removed with its BatchNorm channels and the next layer's matching inputs. The
  layers really shrink: fewer parameters, FLOPs and milliseconds. Only networks that are
  chains (no skip connections) are cut: a residual sum ties channels across blocks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from cnnlab.compress import derive
from cnnlab.errors import CnnlabError
from cnnlab.models.derived import CHAIN_FAMILIES, resized
from cnnlab.models.int8 import set_module
from cnnlab.models.registry import get_entry
from cnnlab.run import Run

# Fine-tuning lowers the learning rate: the weights left are already trained, and a full
# one-cycle peak (0.05 for SGD) first throws away much of what they know. A fifth of the
# parent's peak kept Fashion-MNIST's LeNet-5 at its accuracy after 2 epochs without half its
# weights, and 0.74 points below it after 10 epochs without half its channels (docs/results.md).
FINE_TUNE_LR_DIVISOR = 5


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def prune_weights(model: nn.Module, amount: float) -> list[tuple[Tensor, Tensor]]:
    """Zero the `amount` share of smallest-magnitude conv and linear weights, ranked globally,
    in place; return (weight, mask) pairs, mask 1 where a weight is kept."""
    layers = prunable(model)
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=amount)
    masks = [(m, m.weight_mask.detach().clone()) for m, _ in layers]
    for m, name in layers:
        prune.remove(m, name)  # weight = weight_orig * mask, as a plain parameter again
    return [(m.weight, mask) for m, mask in masks]


@contextmanager
def masked_gradients(masks: list[tuple[Tensor, Tensor]]) -> Iterator[None]:
    """Keep pruned weights at 0 while training: their gradient is masked to 0, so SGD (and its
    momentum and weight decay, both proportional to a weight that is 0) and Adam never move them."""
    handles = [w.register_hook(lambda g, mask=mask: g * mask) for w, mask in masks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def sparsity(model: nn.Module) -> float:
    """Share of conv and linear weights that are exactly 0."""
    weights = [m.weight for m, _ in prunable(model)]
    return sum(int((w == 0).sum()) for w in weights) / max(sum(w.numel() for w in weights), 1)


def prune_channels(model: nn.Module, amount: float) -> dict[str, list[int]]:
    """Remove the `amount` share of filters (smallest L1 norm) of every convolution that feeds a
    later convolution or linear layer, in place, with the BatchNorm channels and the next
    layer's inputs they feed. Returns {layer: [inputs, outputs]} of each resized layer.

    Layers are taken in the order they are registered, which is the order data flows through
    in the chain networks this is allowed on (CHAIN_FAMILIES)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    sizes: dict[str, list[int]] = {}
    kept: Tensor | None = None  # channels kept by the last convolution, that the next layer reads
    channels = 0  # that convolution's channels before pruning
    for i, (name, m) in enumerate(layers):
        if isinstance(m, nn.BatchNorm2d):
            if kept is None:
                continue
            new: nn.Module = resized(m, len(kept), len(kept))
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(new, key).data.copy_(getattr(m, key).data[kept])
            new.num_batches_tracked.copy_(m.num_batches_tracked)
        elif isinstance(m, nn.Conv2d):
            inputs = kept if kept is not None else torch.arange(m.in_channels)
            weight = m.weight.data[:, inputs]
            feeds = any(isinstance(later, (nn.Conv2d, nn.Linear)) for _, later in layers[i + 1 :])
            keep = max(1, round(m.out_channels * (1 - amount))) if feeds else m.out_channels
            outputs = weight.abs().sum((1, 2, 3)).topk(keep).indices.sort().values
            new = resized(m, len(inputs), keep)
            new.weight.data.copy_(weight[outputs])
            if m.bias is not None:
                new.bias.data.copy_(m.bias.data[outputs])
            kept, channels = outputs, m.out_channels
        else:  # Linear: reads the last convolution's maps flattened, channel by channel
            if kept is None:
                continue
            if m.in_features % channels:
                raise CnnlabError(f"{name} reads {m.in_features} features, not a whole number of maps of {channels} channels.")
            per_channel = m.in_features // channels
            columns = (kept[:, None] * per_channel + torch.arange(per_channel)).flatten()
            new = resized(m, len(columns), m.out_features)
            new.weight.data.copy_(m.weight.data[:, columns])
            if m.bias is not None:
                new.bias.data.copy_(m.bias.data)
            kept = None
        set_module(model, name, new)
        sizes[name] = [new.weight.shape[1] if not isinstance(new, nn.BatchNorm2d) else len(new.weight), len(new.weight)]
    return sizes


def prune_run(parent: Run, out: str | Path, amount: float = 0.5, structured: bool = False, epochs: int | None = None,
              lr: float | None = None, overwrite: bool = False, quiet: bool = False) -> Run:
    """A new run: `parent`'s model pruned (see the module), fine-tuned for `epochs` (0: not at all;
    default: 1 for weights, the parent's epochs for channels) at `lr` (default: a fifth of the
    parent's peak learning rate)."""
    parent.require_classifier("pruning")
    if epochs is None:  # zeroed weights recover in an epoch; a net with half its channels relearns more
        epochs = parent.config.epochs if structured else 1
    if not 0 < amount < 1:
        raise CnnlabError(f"--prune is the share of weights to remove, between 0 and 1 (e.g. 0.5), got {amount}.")
    if epochs < 0:
        raise CnnlabError(f"--epochs of fine-tuning must be 0 or more, got {epochs}.")
    family = get_entry(parent.config.model).family
    if structured and family not in CHAIN_FAMILIES:
        raise CnnlabError(f"channel pruning cuts chains of layers, and {parent.config.model} adds skip connections; "
                          "prune it without --structured.")
    data = parent.load_data()
    model = copy.deepcopy(parent.model)
    masks: list[tuple[Tensor, Tensor]] = []
    if structured:
        layers = prune_channels(model, amount)
    else:
        masks, layers = prune_weights(model, amount), {}
    derived = {"method": "prune", "amount": amount, "structured": structured, "layers": layers}
    run = derive.start(parent, out, derived, model, data, overwrite, epochs=max(epochs, 1),
                       lr=lr if lr is not None else parent.config.lr / FINE_TUNE_LR_DIVISOR)
    if epochs == 0:
        return derive.finish_untrained(run, data)
    with masked_gradients(masks):
        return derive.fine_tune(run, data, quiet)
