"""The lab page and the playground, end to end, in Debian's Chromium driven by Playwright,
against a real uvicorn server on 127.0.0.1 (a free port; stopped by the fixture).

Screenshots go to $CNNLAB_SCREENSHOTS when set (docs/screenshots/ holds the committed ones),
else to the test's temporary folder.
"""

from __future__ import annotations

import pytest

from conftest import needs_chromium, serving
from test_serve_api import digit_png

# Skipped on a developer machine without it; in CI (.ci/run installs it) a missing browser fails.
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(trained_run):
    from cnnlab.serve import create_app

    with serving(create_app(trained_run.path)) as url:
        yield url


def test_lab_predicts_explains_and_flips_with_eps(page, server, digits, tmp_path, shots) -> None:
    png, label = digit_png(digits, 5)
    (tmp_path / "digit.png").write_bytes(png)
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#model-info').textContent.includes('lenet5')")
    page.set_input_files("#upload", str(tmp_path / "digit.png"))
    page.wait_for_function("document.querySelector('#top-class').textContent !== '–'")
    assert page.inner_text("#top-class") == str(label)
    page.wait_for_function("document.querySelector('#gradcam').naturalWidth === 224")
    assert page.inner_text("#gradcam-target") == f"class {label}"
    page.wait_for_function("document.querySelector('#adv-class').dataset.eps === '0'")
    assert page.inner_text("#adv-class") == str(label)  # eps 0: nothing changed
    page.fill("#eps", "0.3")  # moves the slider and fires its input and change events
    page.wait_for_function("document.querySelector('#adv-class').dataset.eps === '0.3'")
    assert page.inner_text("#eps-value") == "0.30"
    assert page.inner_text("#adv-class") != str(label)
    assert f"flipped from {label}" in page.inner_text("#adv-flipped")
    assert page.inner_text("#error") == ""
    page.screenshot(path=shots / "lab.png", full_page=True)


def test_a_drawn_stroke_is_predicted(page, server) -> None:
    page.goto(server + "/")
    box = page.wait_for_selector("#draw").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    for y in range(40, 250, 15):  # one vertical stroke down the middle
        page.mouse.move(box["x"] + 140, box["y"] + y)
    page.mouse.up()
    page.wait_for_function("document.querySelector('#top-class').textContent !== '–'")
    assert page.inner_text("#top-class") in [str(d) for d in range(10)]
    assert page.locator("#bars .bar").count() == 10


def test_explorer_works_the_lecture_example_to_minus_25(page, server, shots) -> None:
    page.goto(server + "/")
    out = page.wait_for_selector("#conv-output")
    out.click(position={"x": 36 * 2 + 18, "y": 36 * 4 + 18})  # cell (4, 2): the bottom row, padded below
    page.wait_for_function("document.querySelector('#cell h3') && document.querySelector('#cell h3').textContent.includes('(4, 2)')")
    assert page.inner_text("#cell-total") == "324"  # conv2d's value there
    out.click(position={"x": 18, "y": 18})  # cell (0, 0): cells are 36 px
    page.wait_for_function("document.querySelector('#cell h3').textContent.includes('(0, 0)')")
    assert page.inner_text("#cell-total") == "-25"
    assert [s.inner_text() for s in page.query_selector_all(".channel-sum")] == ["308", "-498", "164"]
    assert "308 − 498 + 164 + 1 (bias) = -25" in page.inner_text("#cell")
    page.screenshot(path=shots / "explorer-lecture.png", full_page=True)


def test_explorer_shows_the_models_maps_and_a_conv1_cell(page, server, digits, tmp_path, shots) -> None:
    png, _ = digit_png(digits, 5)
    (tmp_path / "digit.png").write_bytes(png)
    page.goto(server + "/")
    page.wait_for_selector("#conv-output")
    page.set_input_files("#upload", str(tmp_path / "digit.png"))
    page.wait_for_function("document.querySelector('#top-class').textContent !== '–'")
    page.check("input[name=source][value=model]")
    page.wait_for_selector("canvas.clickable[data-channel='2']")
    assert page.locator(".column").count() >= 9  # input, normalize, conv1 ... pool2, output
    page.click("canvas.clickable[data-channel='2']", position={"x": 42, "y": 42})  # 3 px per cell: (14, 14)
    page.wait_for_selector("#cell-total")
    total = float(page.inner_text("#cell-total"))
    assert f"conv2d gives {total:.3f}" in page.inner_text("#cell")
    assert "net.features.conv1, output channel 2, cell (14, 14)" in page.inner_text("#cell")
    page.screenshot(path=shots / "explorer-model.png", full_page=True)


def test_playground_trains_and_shows_the_accuracy(page, server, shots) -> None:
    page.goto(server + "/playground")
    page.wait_for_function("document.querySelector('#dataset').options.length === 5")
    page.select_option("#dataset", "circles")
    page.fill("#hidden", "4")
    page.click("#train")
    page.wait_for_selector("#accuracy[data-done='1']")
    assert float(page.inner_text("#accuracy").rstrip("%")) >= 95
    assert "17 numbers found by gradient descent" in page.inner_text("#learned")
    assert "1 hidden layer(s) of 4 neurons, tanh" in page.inner_text("#chosen")
    page.screenshot(path=shots / "playground.png", full_page=True)
    page.click("#logistic")  # the quiz's other half: no hidden layer
    page.wait_for_function("document.querySelector('#chosen').textContent.includes('logistic regression')")
    assert float(page.inner_text("#accuracy").rstrip("%")) <= 65
    page.fill("#lr", "-1")
    page.click("#train")
    page.wait_for_function("document.querySelector('#error').textContent.includes('learning rate')")


HOSTILE = "<img src=x onerror=window.__xss=1>"


@pytest.fixture(scope="module")
def hostile_server(trained_run, tmp_path_factory):
    """A server whose run's classes, and a sibling run's folder, are named to run script if
    the page ever put them in as HTML."""
    import json
    import shutil

    from cnnlab.serve import create_app

    folder = tmp_path_factory.mktemp("hostile")
    served = folder / "lab"
    shutil.copytree(trained_run.path, served)
    shutil.copytree(trained_run.path, folder / HOSTILE)
    doc = json.loads((served / "provenance.json").read_text())
    doc["data"]["classes"] = [f"<img src=x onerror=window.__xss={k}>" for k in range(10)]
    (served / "provenance.json").write_text(json.dumps(doc))
    with serving(create_app(served)) as url:
        yield url


def test_hostile_class_and_run_names_render_as_text(page, hostile_server, digits, tmp_path) -> None:
    png, label = digit_png(digits, 5)
    (tmp_path / "digit.png").write_bytes(png)
    page.goto(hostile_server + "/")
    page.wait_for_function("document.querySelector('#run').options.length === 2")
    assert sorted(page.eval_on_selector_all("#run option", "os => os.map((o) => o.textContent)")) == sorted([HOSTILE, "lab"])
    page.set_input_files("#upload", str(tmp_path / "digit.png"))
    page.wait_for_function("document.querySelector('#top-class').textContent !== '–'")
    assert page.inner_text("#top-class") == f"<img src=x onerror=window.__xss={label}>"
    page.wait_for_function("document.querySelector('#gradcam-target').textContent !== '–'")
    assert page.inner_text("#gradcam-target") == f"class <img src=x onerror=window.__xss={label}>"
    page.wait_for_function("document.querySelector('#adv-class').dataset.eps === '0'")
    page.check("input[name=source][value=model]")
    page.wait_for_selector("canvas.clickable[data-channel='0']")
    assert f"<img src=x onerror=window.__xss={label}>" in page.inner_text("#columns")
    assert page.locator("img[src=x]").count() == 0  # no element was made from a name
    assert page.evaluate("window.__xss") is None
