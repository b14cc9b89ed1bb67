"""`POST /api/pose` over real HTTP (uvicorn on 127.0.0.1, with a token), and the lab page drawing
its skeleton in Debian's Chromium.

The run is a `deeppose` trained for a few seconds on small stick figures: what is checked is
the serving (joints in the picture's own pixels, the same as `cnnlab predict`, the skeleton
drawn), not how well it learned (test_pose.py).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.data import stick_figures as figures_module
from cnnlab.data.stick_figures import JOINTS
from cnnlab.run import Run
from cnnlab.tasks.pose import skeleton
from conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium, serving

TOKEN = "t0ken-of-the-pose-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SIDE = 48


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: a second thread only waits on a busy core
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(figures_module, "TRAIN_VAL", 64)
            mp.setattr(figures_module, "TEST", 8)
            return cnnlab.train(model="deeppose", data="stick-figures", image_size=SIDE, epochs=2, batch_size=8,
                                optimizer="adam", out=tmp_path_factory.mktemp("runs") / "deeppose", quiet=True)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def figure_png() -> bytes:
    """A stick figure of 48 px as a 144x96 PNG (each pixel a 3x2 block): another shape than the model's input."""
    x = figures_module.figures(1, 99, SIDE)[0][0]
    pixels = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((3 * SIDE, 2 * SIDE), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(pose_run: Run) -> Iterator[str]:
    from cnnlab.serve import create_app

    with serving(create_app(pose_run.path, token=TOKEN)) as url:
        yield url


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as client:
        yield client


def test_pose_answers_the_joints_in_the_pictures_own_pixels(http, pose_run: Run, figure_png: bytes, tmp_path: Path) -> None:
    r = http.post("/api/pose", files={"file": ("figure.png", figure_png)})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["run"], doc["width"], doc["height"]) == ("deeppose", 3 * SIDE, 2 * SIDE)
    assert list(doc["joints"]) == JOINTS and all(len(xy) == 2 for xy in doc["joints"].values())
    assert doc["limbs"] == [[JOINTS[a], JOINTS[b]] for a, b in skeleton(JOINTS)] and len(doc["limbs"]) == 15
    picture = Image.open(io.BytesIO(base64.b64decode(doc["picture"].split(",", 1)[1])))
    assert picture.size == (3 * SIDE, 2 * SIDE)  # 144 px is legible as it is: not enlarged
    (tmp_path / "figure.png").write_bytes(figure_png)  # the very answer `cnnlab predict` gives
    (expected,) = pose_run.predict_files([tmp_path / "figure.png"], out=tmp_path)
    assert doc["joints"] == expected["joints"]


def test_a_pose_run_sends_other_tasks_to_its_endpoint(http, figure_png: bytes) -> None:
    r = http.post("/api/detect", files={"file": ("figure.png", figure_png)})
    assert r.status_code == 400
    assert "learned the pose task; /api/detect answers for detection runs only; send its images to /api/pose" in r.text
    assert "/api/pose" in http.get("/openapi.json").json()["paths"]


@needs_chromium
def test_the_lab_draws_the_skeleton_on_an_upload(server: str, http, figure_png: bytes, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    (tmp_path / "figure.png").write_bytes(figure_png)
    answer = http.post("/api/pose", files={"file": ("figure.png", figure_png)}).json()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server}/#token={TOKEN}")
        page.wait_for_function("document.querySelector('#model-info').textContent.startsWith('deeppose on ')")
        page.wait_for_selector("#where", state="visible")
        page.set_input_files("#upload", str(tmp_path / "figure.png"))
        page.wait_for_function(f"document.querySelectorAll('#where-list li').length === {len(JOINTS)}")
        items = page.eval_on_selector_all("#where-list li", "lis => lis.map((li) => li.textContent)")
        assert items[0].startswith(f"{JOINTS[0]} at (")
        # the canvas is the picture at 360 px on its longer side; each joint is a white dot
        scale = 360 / (3 * SIDE)
        x, y = ((v + 0.5) * scale for v in answer["joints"]["neck"])
        pixel = page.evaluate(f"Array.from(document.querySelector('#where').getContext('2d').getImageData({int(x)}, {int(y)}, 1, 1).data)")
        assert pixel[:3] == [255, 255, 255]
        browser.close()
    assert not errors, errors
