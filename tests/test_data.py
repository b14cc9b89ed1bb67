"""cnnlab.data: every loader on real files in its real format, written here in tmp_path.

The one exception is the real Fashion-MNIST of Debian's dataset-fashion-mnist package, loaded
when this machine has it. No test reaches the network: the download tests use a closed port
and a web server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import batches, cifar, dataset_entries, epoch_order, images, load_data, mnist, parse_augment
from cnnlab.data.batches import augment, crop_offsets, random_crop
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.data.images import read_image
from cnnlab.data.registry import DatasetEntry
from cnnlab.errors import CnnlabError

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def one_sentence(e: pytest.ExceptionInfo[CnnlabError]) -> str:
    message = str(e.value)
    assert "\n" not in message and message.endswith("."), message
    return message


# -- IDX ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path: Path, name: str, dtype: type) -> None:
    values = np.arange(24) if dtype is np.uint8 else np.arange(24) * -1000  # past one byte: byte order shows
    array = values.reshape(2, 3, 4).astype(dtype)
    write_idx(tmp_path / name, array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_the_documented_one(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", np.array([7, 2, 1], dtype=np.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_truncated_or_corrupt_files_are_named(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.idx", np.zeros((10, 28, 28), np.uint8))
    raw = (tmp_path / "x.idx").read_bytes()
    cases = {
        "short.idx": raw[:-100],  # payload cut
        "header.idx": raw[:9],  # cut inside the dimensions
        "short.idx.gz": gzip.compress(raw)[:-20],  # gzip stream cut
        "text.idx": b"hello, this is not IDX",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CnnlabError, match=name) as e:
            read_idx(tmp_path / name)
        one_sentence(e)


# -- MNIST and Fashion-MNIST -------------------------------------------------------------------

def write_mnist_files(folder: Path, n_train: int = 100, n_test: int = 20, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Tiny IDX files in the real layout; image k has pixel (0, 0) = k to trace it through a split."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    arrays = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = np.arange(n)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{part}-images-idx3-ubyte{suffix}", x)
        write_idx(folder / f"{part}-labels-idx1-ubyte{suffix}", y)
        arrays[part] = (x, y)
    return arrays["train"], arrays["t10k"]


def test_fashion_mnist_from_data_dir(tmp_path: Path) -> None:
    (x, y), (x_test, y_test) = write_mnist_files(tmp_path)
    ds = load_data("fashion-mnist", data_dir=tmp_path)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.num_classes == 10
    assert ds.input_shape == (1, 28, 28) and ds.source == str(tmp_path) and ds.licence == "MIT"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (90, 10, 20)
    assert torch.bincount(ds.val.y, minlength=10).tolist() == [1] * 10  # stratified: one per class
    for split in ds.splits().values():
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert 0 <= split.x.min() and split.x.max() <= 1
    for split in (ds.train, ds.val):  # every image keeps its own label and pixels
        ids = (split.x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(split.y, torch.from_numpy(y).long()[ids])
        torch.testing.assert_close(split.x[:, 0], torch.from_numpy(x[ids.numpy()]).float() / 255)
    assert sorted(torch.cat([ds.train.x, ds.val.x])[:, 0, 0, 0].mul(255).round().long().tolist()) == list(range(100))
    torch.testing.assert_close(ds.test.x[:, 0], torch.from_numpy(x_test).float() / 255)
    assert torch.equal(ds.test.y, torch.from_numpy(y_test).long())


def test_val_fraction_zero_gives_an_empty_val_split_of_the_right_shape(tmp_path: Path) -> None:
    write_mnist_files(tmp_path)
    ds = load_data("fashion-mnist", data_dir=tmp_path, val_fraction=0.0)
    assert len(ds.train) == 100 and ds.val.x.shape == (0, 1, 28, 28) and ds.val.y.shape == (0,)


@pytest.mark.parametrize("sub", ["", "fashion-mnist"])
def test_fashion_mnist_from_cnnlab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sub: str) -> None:
    write_mnist_files(tmp_path / sub, gz=False)  # un-gzipped names are accepted too
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    ds = load_data("fashion-mnist")
    assert len(ds.train) + len(ds.val) == 100 and ds.source == str(tmp_path / sub)


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir() and not os.environ.get("CI"), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package() -> None:
    ds = load_data("fashion-mnist")
    assert ds.source == str(DEBIAN_FMNIST)
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (60_000, 10_000) and len(ds.val) == 6_000
    assert ds.input_shape == (1, 28, 28) and ds.train.x.dtype == torch.float32
    # the files' first labels (Xiao et al.'s own loader prints the same): train starts with an ankle boot
    assert read_idx(DEBIAN_FMNIST / "train-labels-idx1-ubyte.gz")[0] == 9 and ds.classes[9] == "Ankle boot"
    assert ds.test.y[:5].tolist() == [9, 2, 1, 1, 6]
    assert torch.bincount(torch.cat([ds.train.y, ds.val.y])).tolist() == [6_000] * 10
    assert torch.bincount(ds.val.y).tolist() == [600] * 10
    mean = torch.cat([ds.train.x, ds.val.x]).mean().item()
    assert mean == pytest.approx(0.2860, abs=1e-4)  # the published Fashion-MNIST train mean


@pytest.fixture
def nothing_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No files anywhere: empty HOME, no $CNNLAB_DATA, no system folders. Returns HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CNNLAB_DATA")
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", (tmp_path / "no-such-dir",))
    return home


def test_offline_and_absent_says_how_to_install(nothing_on_disk: Path) -> None:
    with pytest.raises(CnnlabError) as e:
        load_data("fashion-mnist", download=False)
    message = one_sentence(e)
    assert "apt-get install dataset-fashion-mnist" in message and "train-images-idx3-ubyte.gz" in message
    assert "CNNLAB_OFFLINE" in message
    assert not (nothing_on_disk / ".cache").exists()  # offline means: not even a folder made for it


def test_failed_download_is_the_same_clear_error(nothing_on_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import FashionMNIST

    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:1/"])  # nothing listens on port 1
    with pytest.raises(CnnlabError) as e:
        load_data("fashion-mnist", download=True)
    message = one_sentence(e)
    assert "could not be downloaded" in message and "apt-get install dataset-fashion-mnist" in message
    assert e.value.__cause__ is not None  # the network error is kept for CNNLAB_DEBUG
    assert list((nothing_on_disk / ".cache" / "cnnlab" / "data" / "fashion-mnist").iterdir()) == []


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A web server on 127.0.0.1 serving a folder: (base URL, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, *args: object) -> None:
            pass  # torchvision hangs up after reading the headers of its redirect check

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    server.server_close()


def test_download_checks_md5_and_caches(
    nothing_on_disk: Path, monkeypatch: pytest.MonkeyPatch, web_server: tuple[str, Path]
) -> None:
    from torchvision.datasets import MNIST

    url, www = web_server
    write_mnist_files(www)
    resources = [(f, hashlib.md5((www / f).read_bytes()).hexdigest()) for f in mnist.FILES]
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:1/", url])  # the first mirror is down
    monkeypatch.setattr(MNIST, "resources", resources)
    ds = load_data("mnist", download=True)
    cached = nothing_on_disk / ".cache" / "cnnlab" / "data" / "mnist"
    assert ds.source == str(cached) and sorted(p.name for p in cached.iterdir()) == sorted(mnist.FILES)
    assert ds.classes == [str(d) for d in range(10)] and len(ds.test) == 20

    for f in mnist.FILES:
        (www / f).unlink()  # the server has nothing now: the second load uses the cache
    assert load_data("mnist", download=True).sha256() == ds.sha256()

    shutil.rmtree(cached)
    monkeypatch.setattr(MNIST, "resources", [(f, "0" * 32) for f in mnist.FILES])
    write_mnist_files(www)
    with pytest.raises(CnnlabError, match="could not be downloaded"):  # a wrong MD5 is refused
        load_data("mnist", download=True)
    assert list(cached.iterdir()) == []  # and not left behind for the next load to read


def test_mnist_offline_and_absent(nothing_on_disk: Path) -> None:
    with pytest.raises(CnnlabError) as e:
        load_data("mnist", download=False)
    message = one_sentence(e)
    assert message.startswith("mnist is not on this machine") and "t10k-labels-idx1-ubyte.gz" in message
    assert "apt-get" not in message  # Debian has no MNIST package to suggest


def test_mismatched_mnist_files_are_named(tmp_path: Path) -> None:
    write_mnist_files(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(CnnlabError, match="train-labels-idx1-ubyte.gz"):
        load_data("fashion-mnist", data_dir=tmp_path)


# -- --data-dir: the one place looked in when given --------------------------------------------

@pytest.mark.parametrize("name", ["digits", "fashion-mnist", "cifar10"])
def test_a_data_dir_that_does_not_exist_is_one_sentence_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  name: str) -> None:
    write_mnist_files(tmp_path / "copy" / "fashion-mnist")  # the copy a typo must not quietly read
    write_cifar(tmp_path / "copy")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "copy"))
    with pytest.raises(CnnlabError) as e:
        load_data(name, data_dir=tmp_path / "typo")
    assert one_sentence(e) == (f"data folder {tmp_path / 'typo'} does not exist; "
                               "create it, or drop --data-dir to use the usual places.")
    (tmp_path / "file").write_text("")
    with pytest.raises(CnnlabError, match="is a file, not a folder"):
        load_data(name, data_dir=tmp_path / "file")


def test_a_data_dir_without_the_files_does_not_fall_back_to_another_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist_files(tmp_path / "elsewhere")
    write_cifar(tmp_path / "elsewhere")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "elsewhere"))
    assert load_data("fashion-mnist").source == str(tmp_path / "elsewhere")  # found there without --data-dir
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError) as e:
        load_data("fashion-mnist", data_dir=tmp_path / "empty", download=False)
    assert f"in {tmp_path / 'empty'} (--data-dir)" in one_sentence(e)
    with pytest.raises(CnnlabError, match="cifar10 is not on this machine"):
        load_data("cifar10", data_dir=tmp_path / "empty", download=False)
    write_mnist_files(tmp_path / "empty" / "fashion-mnist")  # its sub-folder named for the dataset counts
    assert load_data("fashion-mnist", data_dir=tmp_path / "empty").source == str(tmp_path / "empty" / "fashion-mnist")


# -- CIFAR-10 ----------------------------------------------------------------------------------

def cifar_records(n: int, first_id: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n records: label, then R, G, B planes. Pixel (0, 0) is pure red, (1, 2) pure blue, and
    green at (31, 31) carries the image's id."""
    labels = (np.arange(first_id, first_id + n) % 10).astype(np.uint8)
    x = np.zeros((n, 3, 32, 32), np.uint8)
    x[:, 0, 0, 0] = 255
    x[:, 2, 1, 2] = 255
    x[:, 1, 31, 31] = np.arange(first_id, first_id + n)
    raw = np.concatenate([labels[:, None], x.reshape(n, -1)], axis=1)
    return raw.tobytes(), x, labels


def write_cifar(root: Path, per_batch: int = 20, n_test: int = 10) -> tuple[np.ndarray, np.ndarray]:
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    for i, name in enumerate(cifar.TRAIN_FILES):
        (folder / name).write_bytes(cifar_records(per_batch, i * per_batch)[0])
    raw, x_test, y_test = cifar_records(n_test, 200)
    (folder / cifar.TEST_FILE).write_bytes(raw)
    (folder / cifar.META_FILE).write_text("".join(f"class{i}\n" for i in range(10)) + "\n\n")
    return x_test, y_test


def test_cifar10_binary_batches(tmp_path: Path) -> None:
    x_test, y_test = write_cifar(tmp_path)
    ds = load_data("cifar10", data_dir=tmp_path)
    assert ds.classes == [f"class{i}" for i in range(10)]  # from batches.meta.txt
    assert ds.input_shape == (3, 32, 32) and (len(ds.train), len(ds.val), len(ds.test)) == (90, 10, 10)
    for split in ds.splits().values():
        assert split.x[:, :, 0, 0].tolist() == [[1.0, 0.0, 0.0]] * len(split)  # red stays red: channel 0
        assert split.x[:, :, 1, 2].tolist() == [[0.0, 0.0, 1.0]] * len(split)  # row 1, column 2: rows first
        ids = (split.x[:, 1, 31, 31] * 255).round().long()
        assert torch.equal(split.y, ids % 10)  # each label stays with its image
    torch.testing.assert_close(ds.test.x, torch.from_numpy(x_test).float() / 255)
    assert torch.equal(ds.test.y, torch.from_numpy(y_test).long())
    assert sorted((torch.cat([ds.train.x, ds.val.x])[:, 1, 31, 31] * 255).round().long().tolist()) == list(range(100))


def test_cifar10_without_meta_file_uses_the_standard_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path)
    (tmp_path / cifar.FOLDER / cifar.META_FILE).unlink()
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    assert load_data("cifar10").classes[:3] == ["airplane", "automobile", "bird"]


def test_cifar10_truncated_batch_is_named(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    path = tmp_path / cifar.FOLDER / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CnnlabError, match="data_batch_3.bin"):
        load_data("cifar10", data_dir=tmp_path)


def test_cifar10_python_version_is_refused_not_unpickled(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not read")
    with pytest.raises(CnnlabError, match="python version") as e:
        load_data("cifar10", data_dir=tmp_path, download=False)
    assert "cifar-10-binary.tar.gz" in one_sentence(e)


def test_cifar10_offline_and_absent(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="cifar10 is not on this machine") as e:
        load_data("cifar10", download=False)
    assert "cifar-10-binary.tar.gz" in one_sentence(e)


# -- digits ------------------------------------------------------------------------------------

def test_digits(digits) -> None:
    assert digits.input_shape == (1, 28, 28) and digits.classes == [str(d) for d in range(10)]
    sizes = [len(s) for s in digits.splits().values()]
    assert sum(sizes) == 1797
    for size, share in zip(sizes, (0.7, 0.1, 0.2), strict=True):
        assert abs(size - share * 1797) <= 10  # one image per class of rounding
    for split in digits.splits().values():
        assert split.x.dtype == torch.float32 and 0 <= split.x.min() and split.x.max() <= 1
        assert torch.bincount(split.y, minlength=10).min() > 0
    assert digits.train.x.max() == 1.0  # 16/16 survives the upsampling somewhere
    assert load_data("digits").sha256() == digits.sha256()  # the same tensors every call


def test_digits_val_fraction_keeps_the_test_split() -> None:
    ds = load_data("digits", val_fraction=0.2)
    assert abs(len(ds.val) - 0.2 * 1797) <= 10 and abs(len(ds.test) - 0.2 * 1797) <= 10


# -- one image file ----------------------------------------------------------------------------

def test_gray_png(tmp_path: Path) -> None:
    pixels = np.tile(np.arange(0, 250, 25, dtype=np.uint8), (20, 1))  # 20 rows x 10 columns
    Image.fromarray(pixels).save(tmp_path / "g.png")
    x = read_image(tmp_path / "g.png", 1, (20, 10))  # same size: no resampling
    assert x.shape == (1, 20, 10) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], torch.from_numpy(pixels).float() / 255)
    x3 = read_image(tmp_path / "g.png", 3, (28, 28))
    assert x3.shape == (3, 28, 28) and torch.equal(x3[0], x3[1]) and torch.equal(x3[1], x3[2])


def test_rgb_jpeg(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "red.jpg", quality=95)
    x = read_image(tmp_path / "red.jpg", 3, (32, 32))
    assert x.shape == (3, 32, 32)
    torch.testing.assert_close(x.mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.02, rtol=0)
    gray = read_image(tmp_path / "red.jpg", 1, (28, 28))
    assert gray.shape == (1, 28, 28) and gray.mean().item() == pytest.approx(0.299, abs=0.02)  # ITU-R 601 luma


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)  # black everywhere; left half transparent, right half opaque
    rgba[:, 2:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = read_image(tmp_path / "a.png", 1, (4, 4))
    assert x[0, :, :2].tolist() == [[1.0, 1.0]] * 4 and x[0, :, 2:].tolist() == [[0.0, 0.0]] * 4


def test_palette_gif(tmp_path: Path) -> None:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0 = red, 1 = blue
    im.paste(1, (4, 0, 8, 8))  # right half blue
    im.save(tmp_path / "p.gif")
    x = read_image(tmp_path / "p.gif", 3, (8, 8))
    assert x[:, 0, 0].tolist() == [1.0, 0.0, 0.0] and x[:, 0, 7].tolist() == [0.0, 0.0, 1.0]


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    pixels = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode == "I;16"
    x = read_image(tmp_path / "deep.png", 1, (1, 4))
    torch.testing.assert_close(x[0, 0], torch.tensor([0.0, 0.25, 0.5, 1.0]), atol=1e-4, rtol=0)
    assert read_image(tmp_path / "deep.png", 3, (6, 6)).shape == (3, 6, 6)


def test_unreadable_images_are_named(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    Image.new("RGB", (64, 64), "red").save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    for name, reason in [("noise.png", "not an image"), ("cut.png", "truncated"), ("missing.png", "no such file")]:
        with pytest.raises(CnnlabError, match=reason) as e:
            read_image(tmp_path / name, 3, (32, 32))
        assert one_sentence(e).startswith(f"cannot read image {tmp_path / name}")


def test_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("L", (20, 20)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(CnnlabError, match="decompression bomb"):
        read_image(tmp_path / "big.png", 1, (28, 28))


# -- imagefolder -------------------------------------------------------------------------------

def make_folder(root: Path, classes: dict[str, str], per_class: int = 10) -> Path:
    """root/<class>/<k>.png, in the given Pillow mode and a few different sizes."""
    for label, (name, mode) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            size = (20 + k, 30 - k)
            color = (label * 60, 10, 200) if mode == "RGB" else label * 60
            suffix = ".jpg" if mode == "RGB" and k % 2 else ".png"
            Image.new(mode, size, color if mode != "RGBA" else (label * 60, 0, 0, 255)).save(root / name / f"{k}{suffix}")
    return root


def test_imagefolder_mixed_modes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets", {"dog": "RGB", "cat": "L", "bird": "RGBA"})
    (root / "cat" / "notes.txt").write_text("not an image, ignored")
    (root / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    ds = load_data(f"imagefolder:{root}")
    assert ds.classes == ["bird", "cat", "dog"] and ds.input_shape == (3, 32, 32)  # color default side
    assert (len(ds.train), len(ds.val), len(ds.test)) == (21, 3, 6)
    assert ds.licence == "the user's own" and ds.source == str(root.resolve())
    # each label stays with its image: the cat (label 1) images are gray 60/255
    cat = ds.train.x[ds.train.y == 1]
    torch.testing.assert_close(cat, torch.full_like(cat, 60 / 255))
    assert len(load_data(f"imagefolder:{root}", image_size=16).train.x[0, 0]) == 16


def test_imagefolder_all_gray_gives_one_channel(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a": "L", "b": "1"}, per_class=5)
    assert load_data(f"imagefolder:{root}").input_shape == (1, 28, 28)


def test_imagefolder_corrupt_file_skipped_or_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", {"a": "L", "b": "RGB"})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="broken.png"):
        ds = load_data(f"imagefolder:{root}", on_corrupt="skip")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 20 and ds.meta["skipped"] == str(Path("b", "broken.png"))
    with pytest.raises(CnnlabError, match="broken.png"):
        load_data(f"imagefolder:{root}", on_corrupt="error")


def test_imagefolder_train_test_folders(tmp_path: Path) -> None:
    make_folder(tmp_path / "train", {"x": "L", "y": "L"}, per_class=10)
    make_folder(tmp_path / "test", {"x": "L", "y": "L"}, per_class=3)
    ds = load_data(f"imagefolder:{tmp_path}")
    assert ds.classes == ["x", "y"] and (len(ds.train), len(ds.val), len(ds.test)) == (18, 2, 6)
    make_folder(tmp_path / "val", {"x": "L", "y": "L"}, per_class=4)
    ds = load_data(f"imagefolder:{tmp_path}")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 8, 6)
    make_folder(tmp_path / "test", {"z": "L"}, per_class=1)
    with pytest.raises(CnnlabError, match="z"):  # a test class train has never seen
        load_data(f"imagefolder:{tmp_path}")


def test_imagefolder_bad_paths(tmp_path: Path) -> None:
    (tmp_path / "file.png").write_bytes(b"")
    make_folder(tmp_path / "one", {"only": "L"}, per_class=2)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    for path, reason in [
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "file.png", "is not a folder"),
        (tmp_path / "one", "at least 2"),
        (tmp_path / "empty", "no images"),
    ]:
        with pytest.raises(CnnlabError, match=reason) as e:
            load_data(f"imagefolder:{path}")
        one_sentence(e)


# -- the registry ------------------------------------------------------------------------------

def test_unknown_dataset_suggests_the_close_name() -> None:
    with pytest.raises(CnnlabError, match="did you mean fashion-mnist"):
        load_data("fashon-mnist")


def test_arguments_are_checked() -> None:
    with pytest.raises(CnnlabError, match="imagefolder:PATH"):
        load_data("imagefolder")
    with pytest.raises(CnnlabError, match="takes no argument"):
        load_data("digits:extra")


# Small data for every registered loader: files written here in its real format, or its own
# embedded or generated data made small. A new loader fails test_every_dataset_has_small_data
# until it is given a line here, and then gets the checks of test_every_dataset_loads.
def _idx_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    write_mnist_files(root, n_train=60, n_test=20)
    return {"data_dir": root}


def _cifar_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    write_cifar(root, per_batch=10, n_test=10)
    return {"data_dir": root}


def _image_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    make_folder(root / "pets", {"dog": "RGB", "cat": "L"}, per_class=6)
    return {"name": f"imagefolder:{root / 'pets'}"}


def _embedded(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return {}


def _few_scenes(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from cnnlab.data import shapes

    monkeypatch.setattr(shapes, "TRAIN_VAL", 40)  # scenes, instead of 2,250 and 500 (~5 s)
    monkeypatch.setattr(shapes, "TEST", 10)
    return {}


def _few_context_scenes(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from cnnlab.data import context_scenes

    monkeypatch.setattr(context_scenes, "TRAIN_VAL", 20)  # scenes, instead of 1,200 and 300
    monkeypatch.setattr(context_scenes, "TEST", 10)
    return {"image_size": 32}


def _few_fashion_scenes(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from cnnlab.data import fashion_scenes

    write_mnist_files(root, n_train=60, n_test=20)
    monkeypatch.setattr(fashion_scenes, "TRAIN_VAL", 20)  # scenes, instead of 2,400 and 600
    monkeypatch.setattr(fashion_scenes, "TEST", 10)
    return {"data_dir": root}


def _coco_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from test_coco import write_coco_folder

    write_coco_folder(root / "coco", {"train": 12})
    return {"name": f"coco:{root / 'coco'}", "image_size": 32}


def _few_moving_actions(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from cnnlab.data import moving_actions

    monkeypatch.setattr(moving_actions, "TRAIN_VAL", 16)  # clips, instead of 2,000 and 500
    monkeypatch.setattr(moving_actions, "TEST", 8)
    return {"image_size": 16}


def _few_moving_crops(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from cnnlab.data import moving_objects

    monkeypatch.setattr(moving_objects, "CROPS", {"train": 2, "val": 1, "test": 1})  # per identity, instead of 60/10/20
    return {}


def _video_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from test_action import bar_frames, write_gif, write_mp4

    for name, direction in (("left", -1), ("right", 1)):
        for i in range(5):  # 2 .mp4 and 3 .gif in each class
            write, suffix = (write_mp4, "mp4") if i % 2 else (write_gif, "gif")
            write(root / "videos" / name / f"{i}.{suffix}", bar_frames(direction, 8))
    return {"name": f"videofolder:{root / 'videos'}", "image_size": 16}


def _few_stick_figures(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from cnnlab.data import stick_figures

    monkeypatch.setattr(stick_figures, "TRAIN_VAL", 16)  # figures, instead of 3,300 and 500
    monkeypatch.setattr(stick_figures, "TEST", 8)
    return {"image_size": 32}


def _coco_keypoints_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    from test_pose import coco_keypoints_folder, person_annotation

    joints = [20, 20, 2, 12, 14, 2, 28, 14, 1, 14, 26, 2, 0, 0, 0]
    people = [person_annotation(i, i, joints) for i in range(1, 11)]
    return {"name": f"coco-keypoints:{coco_keypoints_folder(root / 'people', people, extra_images=9)}", "image_size": 32}


SMALL_DATA = {
    "cifar10": _cifar_files,
    "coco": _coco_folder,
    "coco-keypoints": _coco_keypoints_folder,
    "context-scenes": _few_context_scenes,
    "digits": _embedded,
    "fashion-mnist": _idx_files,
    "fashion-scenes": _few_fashion_scenes,
    "imagefolder": _image_folder,
    "mnist": _idx_files,
    "moving-actions": _few_moving_actions,
    "moving-crops": _few_moving_crops,
    "shapes": _few_scenes,
    "stick-figures": _few_stick_figures,
    "tinted-fashion-mnist": _idx_files,
    "videofolder": _video_folder,
}


def test_every_dataset_has_small_data() -> None:
    assert {e.name for e in dataset_entries()} == set(SMALL_DATA)


@pytest.mark.parametrize("entry", dataset_entries(), ids=lambda e: e.name)
def test_every_dataset_loads(entry: DatasetEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What every user of a Dataset relies on: pixels float32 in [0, 1] of one shape in every
    split, one target per image that fits the classes, a registered task, the same bytes twice."""
    from cnnlab.data.targets import IGNORE, Targets
    from cnnlab.tasks import task_names

    options = SMALL_DATA[entry.name](tmp_path, monkeypatch)
    name = str(options.pop("name", entry.name))
    ds = load_data(name, **options)
    assert ds.name == name and ds.task in task_names()
    assert ds.num_classes >= 2 and len(set(ds.classes)) == ds.num_classes
    assert len(ds.train) > 0 and len(ds.test) > 0
    for split in ds.splits().values():
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == ds.input_shape
        assert len(split.x) == len(split.y)
        if len(split.x):
            assert 0 <= split.x.min() and split.x.max() <= 1
        if isinstance(split.y, Targets):
            for field, kind in split.y.kinds.items():
                t = split.y.get(field)
                assert len(t) == len(split.x), field
                if kind == "mask":
                    assert t.shape[1:] == split.x.shape[2:] and ((t < ds.num_classes) | (t == IGNORE)).all(), field
        else:
            assert split.y.dtype == torch.int64
            assert ((0 <= split.y) & (split.y < ds.num_classes)).all()
    assert load_data(name, **options).sha256() == ds.sha256()  # provenance hashes mean the same data


# -- batches and augmentation ------------------------------------------------------------------

def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    assert torch.equal(epoch_order(100, seed=1, epoch=3), epoch_order(100, seed=1, epoch=3))
    assert not torch.equal(epoch_order(100, seed=1, epoch=3), epoch_order(100, seed=1, epoch=4))
    assert not torch.equal(epoch_order(100, seed=1, epoch=3), epoch_order(100, seed=2, epoch=3))
    assert sorted(epoch_order(100, 0, 0).tolist()) == list(range(100))


def test_batches_cover_every_index_once_and_resume() -> None:
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    order = epoch_order(10, seed=0, epoch=0)
    got = list(batches(x, y, 3, order))
    assert [len(b[1]) for b in got] == [3, 3, 3, 1]
    assert torch.equal(torch.cat([b[1] for b in got]), order)
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in got)  # x and y stay paired
    resumed = list(batches(x, y, 3, order, start=2))
    assert len(resumed) == 2 and all(torch.equal(a[1], b[1]) for a, b in zip(resumed, got[2:], strict=True))
    assert [len(b[1]) for b in batches(x, y, 3, order, drop_last=True)] == [3, 3, 3]


def test_random_crop_is_a_zero_filled_shift() -> None:
    x = torch.rand(16, 3, 8, 8) + 0.1  # no zeros inside, so the zero padding shows where it went
    dy, dx = crop_offsets(len(x), 2, torch.Generator().manual_seed(0))
    out = random_crop(x, 2, dy, dx)
    assert out.shape == x.shape
    shifts = set()
    for i in range(len(x)):
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        matches = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[:, dy : dy + 8, dx : dx + 8], out[i])]
        assert matches == [(int(dy[i]), int(dx[i]))]
        shifts.add(matches[0])
    assert len(shifts) > 1  # each image its own offset


def test_random_flip_flips_exactly_the_drawn_images() -> None:
    x = torch.rand(64, 1, 4, 4)
    y = torch.arange(64)
    out, y_out = augment(x, y, ("flip",), torch.Generator().manual_seed(5))
    assert y_out is y  # class labels do not move
    flipped = torch.rand(64, generator=torch.Generator().manual_seed(5)) < 0.5  # the same draw
    assert 0 < flipped.sum() < 64
    for i in range(64):
        assert torch.equal(out[i], x[i].flip(2) if flipped[i] else x[i])


def test_parse_augment() -> None:
    assert parse_augment("crop, flip") == ("crop", "flip")
    assert parse_augment("none") == () and parse_augment("") == ()
    with pytest.raises(CnnlabError, match="unknown augmentation 'rotate'"):
        parse_augment("crop,rotate")
