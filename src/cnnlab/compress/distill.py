"""Knowledge distillation: a small student learns from a trained teacher's softened outputs.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", section 2: the
student matches the teacher's class probabilities at temperature T, softmax(z / T), which tell
how alike the wrong classes look (a shirt is more like a coat than like a boot), and the true
labels; the soft term is multiplied by T^2 so its gradients keep their size as T changes:

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

The student is the architecture of the run given (its config: model, epochs, seed), trained
from scratch through the one training loop with this loss, so the run given is the baseline:
the same network, epochs and seed without the teacher.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.compress import derive
from cnnlab.errors import CnnlabError
from cnnlab.models import eval_mode
from cnnlab.run import Run, build_checked

# Hinton et al. used T from 2 to 20; T = 4 with most weight on the soft term is the common
# choice for CIFAR-size students (Cho & Hariharan 2019 tabulate it).
TEMPERATURE = 4.0
ALPHA = 0.9


def distillation_loss(student: Tensor, teacher: Tensor, y: Tensor, temperature: float = TEMPERATURE,
                      alpha: float = ALPHA) -> Tensor:
    """Mean loss over the batch: student and teacher logits (N, K), labels y (N,)."""
    soft = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    reduction="batchmean", log_target=True)
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student, y)


def distill_run(student: Run, teacher: Run, out: str | Path, temperature: float = TEMPERATURE, alpha: float = ALPHA,
                epochs: int | None = None, overwrite: bool = False, quiet: bool = False) -> Run:
    """A new run: `student`'s architecture trained from scratch with its config (and seed) on its
    data, learning from `teacher`'s logits (the teacher in eval mode, no gradient)."""
    student.require_classifier("distillation")
    teacher.require_classifier("distillation")
    if not temperature > 0 or not 0 <= alpha <= 1:
        raise CnnlabError(f"--temperature must be above 0 and --alpha in [0, 1], got {temperature} and {alpha}.")
    if teacher.classes != student.classes or teacher.input_shape != student.input_shape:
        raise CnnlabError(f"teacher {teacher.name} and student {student.name} must see the same images and classes.")
    data = student.load_data()
    torch.manual_seed(student.config.seed)  # the student starts from the weights its own run started from
    model = build_checked(student.path, student.config, student.provenance, None)
    derived = {"method": "distill", "teacher": str(teacher.path), "temperature": temperature, "alpha": alpha}
    changes = {} if epochs is None else {"epochs": epochs}
    run = derive.start(student, out, derived, model, data, overwrite, **changes)
    net = teacher.model.eval()

    def loss(x: Tensor, outputs: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(net):
            taught = net(x)
        return distillation_loss(outputs, taught, y, temperature, alpha)

    return derive.fine_tune(run, data, quiet, loss)
