"""The playground: its data sets, its streamed training, and the lecture's quiz through the API."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from cnnlab.errors import CnnlabError
from cnnlab.serve import create_app
from cnnlab.serve.playground.data2d import DATASETS, make_points
from cnnlab.serve.playground.train2d import GRID, PlaygroundConfig, build_net


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(None))


def frames(client, **choices) -> list[dict]:
    r = client.get("/api/playground/train", params=choices)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("name", DATASETS)
def test_data_sets_are_balanced_seeded_and_in_the_square(name) -> None:
    x, y = make_points(name, n=300, noise=0.05, seed=3)
    assert x.shape == (300, 2) and y.shape == (300,)
    assert y.sum() == 150  # two balanced classes
    assert x.abs().max() < 1.5  # inside the drawn extent
    x2, y2 = make_points(name, n=300, noise=0.05, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, make_points(name, n=300, noise=0.05, seed=4)[0])


def test_circles_are_a_disc_inside_a_ring() -> None:
    x, y = make_points("circles", n=400, noise=0.0)
    r = x.norm(dim=1)
    assert r[y == 0].max() <= 0.4 and r[y == 1].min() >= 0.7


def test_logistic_regression_is_one_linear_layer() -> None:
    net = build_net([], "tanh")
    assert [type(m).__name__ for m in net] == ["Linear"]
    assert sum(p.numel() for p in net.parameters()) == 3
    assert sum(p.numel() for p in build_net([4, 3], "relu").parameters()) == (2 * 4 + 4) + (4 * 3 + 3) + (3 + 1)


@pytest.mark.parametrize(("choices", "words"), [
    ({"dataset": "moons"}, "unknown data set 'moons'"),
    ({"hidden": "4,x"}, "hidden must list neurons"),
    ({"hidden": "64"}, "1 to 32 neurons"),
    ({"lr": "0"}, "learning rate"),
    ({"activation": "gelu"}, "unknown activation"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"),
    ({"noise": "0.9"}, "noise must be between 0 and 0.5"),
    ({"n": "5"}, "size must be between"),
    ({"epochs": "0"}, "epochs must be"),
])
def test_bad_choices_answer_400_before_streaming(client, choices, words) -> None:
    r = client.get("/api/playground/train", params=choices)
    assert r.status_code == 400
    assert words in r.json()["error"]


def test_training_streams_boundary_loss_accuracy_and_the_panel(client) -> None:
    fs = frames(client, dataset="xor", hidden="4", epochs=20, seed=1)
    assert [f["epoch"] for f in fs] == list(range(1, 21))  # 20 epochs <= 40 frames: one per epoch
    assert all(len(f["grid"]) == GRID * GRID and 0 <= min(f["grid"]) <= max(f["grid"]) <= 1 for f in fs)
    assert fs[-1]["train_loss"] < fs[0]["train_loss"]
    last = fs[-1]
    assert last["done"] and not any(f.get("done") for f in fs[:-1])
    assert last["learned_count"] == (2 * 4 + 4) + (4 + 1)
    assert [(p["inputs"], p["neurons"]) for p in last["learned"]] == [(2, 4), (4, 1)]
    assert last["chosen"]["hidden"] == [4] and last["chosen"]["dataset"] == "xor"


def test_points_endpoint_splits_half_and_half(client) -> None:
    doc = client.get("/api/playground/data", params={"dataset": "spirals", "n": 200}).json()
    assert len(doc["train"]) == len(doc["test"]) == 100
    assert {p[2] for p in doc["train"]} == {0, 1}


def test_the_lectures_quiz(client) -> None:
    """Logistic regression: >= 0.95 on linear, <= 0.65 on circles; one hidden layer of 4: >= 0.95 on circles."""
    accuracy = lambda **c: frames(client, **c)[-1]["test_accuracy"]  # noqa: E731
    assert accuracy(dataset="linear", hidden="") >= 0.95
    assert accuracy(dataset="circles", hidden="") <= 0.65
    assert accuracy(dataset="circles", hidden="4") >= 0.95
    assert PlaygroundConfig().hidden == [4] and PlaygroundConfig().dataset == "circles"  # the page's defaults are the quiz's


def test_config_check_names_the_problem() -> None:
    with pytest.raises(CnnlabError, match="batch size"):
        PlaygroundConfig(n=100, batch_size=500).check()


def test_a_training_is_bounded_by_its_steps() -> None:
    assert PlaygroundConfig(n=400, batch_size=16, epochs=100).steps == 100 * 13  # 200 training points in 13 batches
    with pytest.raises(CnnlabError, match="2,000,000 steps, over the limit of 20,000; choose fewer epochs or a larger batch"):
        PlaygroundConfig(dataset="spirals", n=2000, epochs=2000, batch_size=1).check()


def test_a_stopped_training_ends_at_its_next_step() -> None:
    import threading

    from cnnlab.serve.playground.train2d import train_frames

    stop = threading.Event()
    frames = []
    for frame in train_frames(PlaygroundConfig(epochs=100, batch_size=1), stop):
        frames.append(frame)
        stop.set()
    assert len(frames) == 1 and not frames[0].get("done")


def test_trainings_beyond_the_limit_are_answered_429_until_one_ends() -> None:
    import asyncio

    from cnnlab.serve.answers import ServeError
    from cnnlab.serve.playground.api import Trainings

    async def scenario() -> list[str]:
        trainings = Trainings(limit=1)
        first = trainings.start(PlaygroundConfig(epochs=100, n=400, batch_size=1).check())
        with pytest.raises(ServeError) as refused:
            trainings.start(PlaygroundConfig(epochs=5).check())
        assert refused.value.status == 429 and "1 trainings are running already" in str(refused.value)
        event = await anext(first)
        await first.aclose()  # the client leaves: the training stops at its next step and frees its place
        for _ in range(200):
            try:
                events = [e async for e in trainings.start(PlaygroundConfig(epochs=5).check())]
                return [event, *events]
            except ServeError:
                await asyncio.sleep(0.05)
        raise AssertionError("the stopped training kept its place")

    events = asyncio.run(scenario())
    assert events[0].startswith("data: ") and json.loads(events[-1][6:])["done"]
