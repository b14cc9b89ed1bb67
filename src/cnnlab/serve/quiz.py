""""Which one is real?": the quiz of a served generate run, and its API.

`POST /api/quiz` starts a quiz of ROUNDS rounds; each round is a pair of images, one a test
image of the run's dataset, the other drawn by its generator, in an order the server keeps to
itself. `POST /api/quiz/{id}/answer` takes the side the visitor thinks is real and answers
whether it was, the score so far and every round's answer, then the next pair. Beside the
visitor's score the page shows the machine's: the held-out accuracy of a classifier trained
fresh to tell the run's real images from its generated ones (`cnnlab generate RUN --detector`).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from torch import Tensor

from cnnlab.serve.answers import ServeError, documented
from cnnlab.serve.lab_api import RunName, served_run
from cnnlab.serve.pictures import data_url, png
from cnnlab.serve.runs import Served

router = APIRouter(prefix="/api", responses=documented(400, 404, 422, 503))
ROUNDS = 10
MAX_QUIZZES = 1_000  # quizzes kept at once (each holds 2 x ROUNDS small images); the oldest is forgotten
REAL_POOL = 2_000  # test images a quiz draws its real ones from, loaded once per run
SHOWN_SIDE = 112  # pixels across an image is shown at (a 28x28 image at 4x)


@dataclass
class Quiz:
    run: str
    pairs: list[tuple[Tensor, Tensor]]  # (left, right) images of each round
    real_sides: list[str]  # "left" or "right", per round
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(a["correct"] for a in self.answers)


class Pair(BaseModel):
    index: int = Field(description="the round, from 0")
    left: str = Field(description="a PNG data URL")
    right: str = Field(description="a PNG data URL")


class Machine(BaseModel):
    accuracy: float | None = Field(description="held-out accuracy of a fresh real-vs-generated classifier; null: not measured")
    note: str


class Started(BaseModel):
    quiz: str
    run: str
    rounds: int
    pair: Pair
    machine: Machine


class Answer(BaseModel):
    pick: Literal["left", "right"] = Field(description="the side the visitor thinks is real")


class Answered(BaseModel):
    correct: bool
    real: Literal["left", "right"] = Field(description="where the real image was")
    score: int
    answered: int
    rounds: int
    answers: list[dict[str, Any]] = Field(description="each round so far: {round, pick, real, correct}")
    next: Pair | None = Field(description="the next pair; null when the quiz is over")


class Quizzes:
    """The open quizzes and each run's pool of real images, shared by the server's threads."""

    def __init__(self) -> None:
        self.open: OrderedDict[str, Quiz] = OrderedDict()
        self.real: dict[str, Tensor] = {}
        self.guard = threading.Lock()

    def real_images(self, served: Served) -> Tensor:
        with self.guard:
            if served.name not in self.real:
                test = served.run.load_data().test.x
                self.real[served.name] = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:REAL_POOL]]
            return self.real[served.name]

    def start(self, served: Served) -> tuple[str, Quiz]:
        from cnnlab.tasks.generate import find_gan, generate

        if served.task != "generate":
            raise ServeError(f"run {served.name} learned the {served.task} task; the quiz needs a generate run (dcgan, cdcgan).")
        real = self.real_images(served)
        g = torch.Generator().manual_seed(secrets.randbits(63))
        gan = find_gan(served.run.model)
        labels = torch.randint(len(served.run.classes), (ROUNDS,), generator=g) if gan.num_classes else None
        with served.lock:
            fake = generate(served.run.model, torch.randn(ROUNDS, gan.latent, generator=g), labels)
        picked = real[torch.randint(len(real), (ROUNDS,), generator=g)]
        real_left = torch.rand(ROUNDS, generator=g) < 0.5
        pairs = [(r, f) if left else (f, r) for r, f, left in zip(picked, fake, real_left.tolist(), strict=True)]
        quiz = Quiz(served.name, pairs, ["left" if left else "right" for left in real_left.tolist()])
        key = secrets.token_urlsafe(16)
        with self.guard:
            self.open[key] = quiz
            while len(self.open) > MAX_QUIZZES:
                self.open.popitem(last=False)
        return key, quiz

    def get(self, key: str) -> Quiz:
        with self.guard:
            if key not in self.open:
                raise ServeError("unknown quiz (it ended, or the server forgot it); start a new one.", 404)
            return self.open[key]


def _quizzes(request: Request) -> Quizzes:
    if not hasattr(request.app.state, "quizzes"):
        request.app.state.quizzes = Quizzes()
    return request.app.state.quizzes


def _pair(quiz: Quiz, i: int) -> Pair:
    left, right = quiz.pairs[i]
    scale = max(1, SHOWN_SIDE // left.shape[1])
    return Pair(index=i, left=data_url(png(left, scale)), right=data_url(png(right, scale)))


def machine_score(served: Served) -> Machine:
    result = served.run.results("generate/detector")
    if result is None:
        return Machine(accuracy=None, note=f"not measured; `cnnlab generate {served.name} --out DIR --detector` trains it")
    return Machine(accuracy=result.get("accuracy"), note=f"a {result.get('model')} trained on {result.get('train_images')} "
                   f"images, scored on {result.get('test_images')} it never saw (0.5: it cannot tell them apart)")


@router.post("/quiz", response_model=Started)
async def start_quiz(request: Request, run: RunName = None) -> Started:
    """Start a quiz: ROUNDS pairs of one real and one generated image of a generate run."""
    served = await served_run(request, run)
    key, quiz = await run_in_threadpool(_quizzes(request).start, served)
    return Started(quiz=key, run=served.name, rounds=ROUNDS, pair=_pair(quiz, 0), machine=machine_score(served))


@router.post("/quiz/{quiz_id}/answer", response_model=Answered)
async def answer_quiz(request: Request, quiz_id: str, answer: Answer) -> Answered:
    """Say which side of the current pair is real; get whether it was, the score and the next pair."""
    quiz = _quizzes(request).get(quiz_id)
    i = len(quiz.answers)
    if i >= len(quiz.pairs):
        raise ServeError(f"this quiz is over ({quiz.score}/{len(quiz.pairs)}); start a new one.", 422)
    real = quiz.real_sides[i]
    quiz.answers.append({"round": i, "pick": answer.pick, "real": real, "correct": answer.pick == real})
    done = len(quiz.answers) == len(quiz.pairs)
    return Answered(correct=answer.pick == real, real=real, score=quiz.score, answered=len(quiz.answers),  # type: ignore[arg-type]
                    rounds=len(quiz.pairs), answers=quiz.answers, next=None if done else _pair(quiz, i + 1))
