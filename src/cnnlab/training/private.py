"""DP-SGD through Opacus: per-sample gradient clipping, Gaussian noise, a privacy accountant.

Abadi et al. 2016, "Deep Learning with Differential Privacy" (CCS): clip each example's gradient
to norm C (`max_grad_norm`), add N(0, sigma^2 C^2) noise to their sum, and count the privacy
spent with the moments (RDP, Mironov 2017) accountant. The noise multiplier sigma is chosen so
that `epochs` of training spend exactly `target_epsilon` at `delta`.

Caveats recorded with the result: cnnlab's batches are a shuffled partition of the training set
(fixed size), not the Poisson sampling the accountant assumes; that is common practice but makes
the reported epsilon an approximation. BatchNorm mixes examples of a batch, so it is replaced by
GroupNorm (Opacus' ModuleValidator) before training, and when the run is loaded again.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn
from torch.optim import Optimizer

ACCOUNTANT = "rdp"


class PrivateTraining:
    """Wraps the model (per-sample gradients) and the optimizer (clip + noise); counts epsilon."""

    def __init__(self, model: nn.Module, optimizer: Optimizer, n_train: int, batch_size: int, total_steps: int,
                 target_epsilon: float, delta: float, max_grad_norm: float) -> None:
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        # the first layer (Normalize) has no input gradient; Opacus' full backward hooks warn about it
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        self.sample_rate = min(1.0, batch_size / n_train)
        self.delta, self.max_grad_norm, self.total_steps = delta, max_grad_norm, total_steps
        with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is still valid
            warnings.simplefilter("ignore", UserWarning)
            self.noise_multiplier = get_noise_multiplier(
                target_epsilon=target_epsilon, target_delta=delta, sample_rate=self.sample_rate,
                steps=total_steps, accountant=ACCOUNTANT,
            )
        self.module = GradSampleModule(model)  # hooks on `model`'s layers record per-sample gradients
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier, max_grad_norm=max_grad_norm,
                                     expected_batch_size=batch_size)
        self.accountant = create_accountant(ACCOUNTANT)
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))

    def epsilon(self) -> float:
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return float(self.accountant.get_epsilon(self.delta))

    def record(self) -> dict[str, Any]:
        """What provenance.json and metrics.jsonl keep about the privacy of this training."""
        return {
            "mechanism": "DP-SGD (Abadi et al. 2016) via Opacus",
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": sum(n for _, _, n in self.accountant.history),
            "accountant": ACCOUNTANT,
            "caveat": "batches are a shuffled partition, not Poisson-sampled as the accountant assumes",
        }

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.accountant.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [tuple(h) for h in state["history"]]

    def close(self) -> None:
        self.module._close()
