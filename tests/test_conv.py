"""`cnnlab conv`: the lecture's worked example, any geometry, and a user's picture, against torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.inside.conv import KERNELS, LECTURE_BIAS, LECTURE_IMAGE, LECTURE_KERNEL


def _torch_map(image: np.ndarray, kernel: np.ndarray, bias: float, stride: int, padding: int, dilation: int) -> np.ndarray:
    out = F.conv2d(torch.from_numpy(image)[None], torch.from_numpy(kernel)[None], torch.tensor([bias], dtype=torch.float64),
                   stride=stride, padding=padding, dilation=dilation)
    return out[0, 0].numpy()


def test_lecture_example_json_gives_the_slide_numbers(cli) -> None:
    r = cli("conv", "--example", "lecture", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["at"] == [0, 0] and doc["value"] == -25
    assert [p["sum"] for p in doc["channels"]] == [308, -498, 164]
    assert [p["channel"] for p in doc["channels"]] == ["R", "G", "B"]
    assert doc["sum"] == "308 - 498 + 164 + 1 = -25"
    # the window of R at (0, 0) is the padded corner: a row and a column of zeros
    assert doc["channels"][0]["window"] == [[0, 0, 0], [0, 156, 155], [0, 153, 154]]
    assert np.array_equal(doc["output"], _torch_map(LECTURE_IMAGE, LECTURE_KERNEL, LECTURE_BIAS, 1, 1, 1))
    assert doc["output_size"] == [5, 5]
    assert doc["formula"][0] == "H_out = floor((5 + 2*1 - 1*(3 - 1) - 1) / 1) + 1 = 5"


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 2, 1), (2, 0, 2), (1, 3, 1)])
def test_every_cell_of_every_geometry_equals_torch(cli, stride: int, padding: int, dilation: int) -> None:
    from cnnlab.inside.conv import lecture_example

    expected = _torch_map(LECTURE_IMAGE, LECTURE_KERNEL, LECTURE_BIAS, stride, padding, dilation)
    for i in range(expected.shape[0]):
        for j in range(expected.shape[1]):
            doc = lecture_example((i, j), stride, padding, dilation)
            assert doc["value"] == expected[i, j]
            assert sum(p["sum"] for p in doc["channels"]) + 1 == expected[i, j]  # the hand work adds up
    assert doc["output_size"] == list(expected.shape) and np.array_equal(doc["output"], expected)
    r = cli("conv", "--at", f"{i},{j}", "--stride", stride, "--padding", padding, "--dilation", dilation, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["value"] == expected[i, j]
    assert json.loads(r.out)["formula"][1].endswith(f"= {expected.shape[1]}")


def test_text_output_shows_the_work(cli) -> None:
    r = cli("conv", "--at", "1,2")
    assert r.code == 0, r.err
    assert "R window" in r.out and "B products" in r.out and "output map 5x5" in r.out
    value = _torch_map(LECTURE_IMAGE, LECTURE_KERNEL, LECTURE_BIAS, 1, 1, 1)[1, 2]
    assert f"= {int(value)}" in r.out
    assert "W_out = floor((5 + 2*1 - 1*(3 - 1) - 1) / 1) + 1 = 5" in r.out


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kernel", ["edge", "blur", "sharpen"])
def test_image_with_named_kernels(cli, tmp_path: Path, kernel: str) -> None:
    rng = np.random.default_rng(0)
    pixels = np.full((20, 30), 0.5)
    pixels[:, 15:] = 1.0  # a vertical edge in the middle
    pixels[5:8, 5:8] = rng.random((3, 3))
    src = _png(tmp_path / "pic.png", pixels)
    out = tmp_path / "out" / f"{kernel}.png"
    r = cli("conv", "--image", src, "--kernel", kernel, "--out", out, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["output_size"] == [20, 30] and doc["padding"] == 1  # "same" size at stride 1
    x = np.asarray(Image.open(src), dtype=np.float64) / 255
    expected = _torch_map(x[None], KERNELS[kernel][None], 0.0, 1, 1, 1)
    assert doc["min"] == pytest.approx(expected.min()) and doc["max"] == pytest.approx(expected.max())
    result = np.asarray(Image.open(out))
    assert result.shape == (20, 30)
    if kernel == "edge":  # shown as |response| / max: 0 on flat areas, bright on the edge
        assert np.abs(result - np.round(np.abs(expected) / np.abs(expected).max() * 255)).max() <= 1
        assert result[10, 2] == 0 and result[10, 14:16].min() > 0
    else:  # blur and sharpen keep brightness: clipped to [0, 1]
        assert np.abs(result - np.round(expected.clip(0, 1) * 255)).max() <= 1  # PNG: 8 bits


def test_image_with_a_kernel_file_and_stride(cli, tmp_path: Path) -> None:
    src = _png(tmp_path / "pic.png", np.random.default_rng(1).random((17, 13)))
    kfile = tmp_path / "k.txt"
    kfile.write_text("1, 0, -1\n2 0 -2\n1 0 -1\n")  # Sobel
    r = cli("conv", "--image", src, "--kernel", kfile, "--stride", "2", "--padding", "0", "--out", tmp_path / "s.png", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["kernel"] == "k" and doc["output_size"] == [8, 6]
    assert doc["formula"][0] == "H_out = floor((17 + 2*0 - 1*(3 - 1) - 1) / 2) + 1 = 8"
    assert np.asarray(Image.open(tmp_path / "s.png")).shape == (8, 6)


def _one_sentence(r) -> None:
    assert r.code == 1 and r.out == ""
    assert r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1 and r.err.strip().endswith(".")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--at", "5,0"], "--at 5,0 is outside the 5x5 output map"),
        (["--at", "0,-1"], "outside the 5x5 output map"),
        (["--at", "3,0", "--stride", "2"], "outside the 3x3 output map"),
        (["--at", "one"], "--at must look like I,J"),
        (["--padding", "0", "--dilation", "3"], "the kernel spans 7x7 pixels (3x3 at dilation 3) but the padded image is only 5x5"),
        (["--stride", "0"], "--stride and --dilation must be at least 1"),
        (["--example", "cat"], "the only worked example is 'lecture'"),
        (["--kernel", "nope", "--image", "x.png"], "--kernel must be edge, blur, sharpen or a text file"),
    ],
)
def test_bad_geometry_is_one_sentence(cli, args: list[str], message: str) -> None:
    r = cli("conv", *args)
    _one_sentence(r)
    assert message in r.err


def test_bad_files_are_one_sentence(cli, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    r = cli("conv", "--image", text)
    _one_sentence(r)
    assert "cannot read image" in r.err and str(text) in r.err
    small = _png(tmp_path / "small.png", np.zeros((2, 2)))
    big = tmp_path / "big.txt"
    big.write_text("\n".join(" ".join(["1"] * 5) for _ in range(5)))
    r = cli("conv", "--image", small, "--kernel", big, "--padding", "1")
    _one_sentence(r)
    assert "the kernel spans 5x5 pixels but the padded image is only 4x4" in r.err
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("1 2 3\n4 5\n")
    r = cli("conv", "--image", small, "--kernel", ragged)
    _one_sentence(r)
    assert "every row as long as the first" in r.err
