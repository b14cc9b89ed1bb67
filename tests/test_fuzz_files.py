"""Hypothesis over every file cnnlab reads: IDX, images, COCO JSON, and a run's safetensors,
checkpoint.pt, config.toml, metrics.jsonl and provenance.json, whole or damaged byte by byte or
field by field. Each gives what it holds, or one CnnlabError naming the problem; never another
exception, and never a silent success on damage the format can detect (a run's weights carry
their SHA-256, gzip its CRC). 25 to 50 examples each here; the slow test runs many more."""

from __future__ import annotations

import gzip
import io
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.data import idx, load_data
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.data.images import read_image
from cnnlab.errors import CnnlabError
from cnnlab.run import CHECKPOINT, CONFIG, METRICS, PROVENANCE, WEIGHTS, Run
from cnnlab.training.checkpoint import load_state
from cnnlab.training.parts import prepare

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FAST = settings(max_examples=50, **SETTINGS)
RUNS = settings(max_examples=25, **SETTINGS)  # each example opens a run: a model built, a file hashed
MORE = settings(max_examples=400, **SETTINGS)

json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=8,
)


@st.composite
def damaged(draw: st.DrawFn, blob: bytes, head: int = 0) -> bytes:
    """`blob` with one bit flipped, cut short, extended, or a stretch overwritten; `head`: the
    first bytes (a header) get half of the flips."""
    kind = draw(st.sampled_from(["flip", "cut", "extend", "overwrite"]))
    if kind == "cut":
        return blob[: draw(st.integers(0, len(blob) - 1))]
    if kind == "extend":
        return blob + draw(st.binary(min_size=1, max_size=64))
    end = min(head, len(blob)) if head and draw(st.booleans()) else len(blob)
    at = draw(st.integers(0, end - 1))
    if kind == "flip":
        return blob[:at] + bytes([blob[at] ^ (1 << draw(st.integers(0, 7)))]) + blob[at + 1 :]
    patch = draw(st.binary(min_size=1, max_size=16))
    return blob[:at] + patch + blob[at + len(patch) :]


def replace_at(doc: object, path: list[object], value: object) -> object:
    """`doc` with the value at `path` (keys and indices, followed as far as they lead) replaced."""
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    key = path[0]
    if isinstance(doc, dict):
        key = key if key in doc else sorted(doc, key=str)[hash(str(key)) % len(doc)]
        return {**doc, key: replace_at(doc[key], path[1:], value)}
    i = key % len(doc) if isinstance(key, int) else 0
    return [*doc[:i], replace_at(doc[i], path[1:], value), *doc[i + 1 :]]


json_path = st.lists(st.one_of(st.integers(0, 50), st.sampled_from(
    ["data", "input_shape", "classes", "mean", "std", "sha256", "sizes", "weights", "task", "finished", "privacy",
     "images", "annotations", "categories", "bbox", "segmentation", "id", "image_id", "category_id", "file_name",
     "height", "width", "counts", "size", "iscrowd"])), max_size=4)


# -- IDX --------------------------------------------------------------------------------------
def check_idx(blob: bytes, folder: Path, original: np.ndarray | None = None) -> None:
    path = folder / "file.idx"
    path.write_bytes(blob)
    try:
        array = read_idx(path)
    except CnnlabError:
        return
    if blob[:2] == b"\x1f\x8b":  # gzip's CRC covers the content: what reads is what was written
        assert original is None or (array.shape == original.shape and np.array_equal(array, original))
    else:
        assert array.ndim == blob[3] and 4 + 4 * array.ndim + array.nbytes == len(blob)


idx_arrays = st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]).flatmap(
    lambda dtype: st.lists(st.integers(0, 4), min_size=1, max_size=3).map(
        lambda shape: (np.arange(math.prod(shape)) % 100).astype(dtype).reshape(shape)))


@FAST
@given(idx_arrays, st.booleans(), st.data())
def test_damaged_idx_files_read_whole_or_are_one_error(tmp_path: Path, array: np.ndarray, gz: bool, data) -> None:
    write_idx(tmp_path / ("a.gz" if gz else "a"), array)
    blob = (tmp_path / ("a.gz" if gz else "a")).read_bytes()
    check_idx(blob, tmp_path, array)
    check_idx(data.draw(damaged(blob, head=16)), tmp_path, array)


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_as_idx_are_one_error_or_an_array(tmp_path: Path, blob: bytes) -> None:
    check_idx(blob, tmp_path)
    check_idx(b"\x00\x00" + blob, tmp_path)


def test_a_gzip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idx, "MAX_BYTES", 1000)
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (10**6).to_bytes(4, "big") + bytes(10**6)))
    with pytest.raises(CnnlabError, match="unpacks to more than 1,000 bytes"):
        read_idx(tmp_path / "bomb.gz")


def test_dimensions_whose_product_overflows_64_bits_are_one_error(tmp_path: Path) -> None:
    # 2**22 x 2**22 x 2**20 values: np.prod wraps around to 0 in int64, so a header alone looked complete
    dims = b"".join((1 << k).to_bytes(4, "big") for k in (22, 22, 20))
    (tmp_path / "big.idx").write_bytes(bytes([0, 0, 8, 3]) + dims)
    with pytest.raises(CnnlabError, match="corrupt or truncated"):
        read_idx(tmp_path / "big.idx")


# -- images -----------------------------------------------------------------------------------
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK"]
FORMATS = {"PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"), "JPEG": ("1", "L", "RGB", "CMYK"),
           "BMP": ("1", "L", "P", "RGB", "RGBA"), "GIF": ("L", "P", "RGBA"), "TIFF": tuple(MODES), "WEBP": ("L", "RGB", "RGBA")}


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, (h, w, 4)).astype(np.uint8)
    im = Image.fromarray(values, "RGBA").convert(mode)
    if mode == "F":
        im = Image.fromarray(np.where(values[..., 0] > 250, np.nan, values[..., 0] * 1e3).astype(np.float32), "F")
    out = io.BytesIO()
    im.save(out, format=fmt)
    return out.getvalue()


def check_image(blob: bytes, channels: int, size: tuple[int, int]) -> None:
    try:
        x = read_image(io.BytesIO(blob), channels, size)
    except CnnlabError:
        return
    assert x.shape == (channels, *size) and x.dtype == torch.float32
    assert bool(torch.isfinite(x).all()) and 0 <= float(x.min()) and float(x.max()) <= 1


@FAST
@given(image_files(), st.sampled_from([1, 3]), st.tuples(st.integers(1, 40), st.integers(1, 40)), st.data())
def test_images_whole_or_damaged_read_as_pixels_in_0_1_or_one_error(blob: bytes, channels: int, size: tuple[int, int],
                                                                     data) -> None:
    check_image(blob, channels, size)
    check_image(data.draw(damaged(blob, head=64)), channels, size)


@FAST
@given(st.binary(max_size=128))
def test_random_bytes_as_an_image_are_one_error(blob: bytes) -> None:
    with pytest.raises(CnnlabError):
        read_image(io.BytesIO(blob), 3, (8, 8))


# -- COCO JSON --------------------------------------------------------------------------------
def coco_doc() -> dict:
    """Six 24x16 images, two categories (ids 5 and 2), a box each and one polygon."""
    images = [{"id": i + 1, "file_name": f"{i}.png", "height": 16, "width": 24} for i in range(6)]
    annotations = [{"id": 10 + i, "image_id": i + 1, "category_id": 5 if i % 2 else 2, "bbox": [2, 3, 8, 6], "area": 48,
                    "iscrowd": 0, **({"segmentation": [[2, 3, 10, 3, 10, 9, 2, 9]]} if i == 0 else {})} for i in range(6)]
    return {"images": images, "annotations": annotations, "categories": [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}]}


@pytest.fixture
def coco_folder(tmp_path: Path) -> Path:
    """The images of `coco_doc`; each example writes its own train.json."""
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (24, 16), (40 * i, 100, 200)).save(root / "images" / f"{i}.png")
    return root


def check_coco(root: Path, on_corrupt: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_data(f"coco:{root}", image_size=16, on_corrupt=on_corrupt)
    except CnnlabError:
        return
    for split in data.splits().values():
        boxes, labels = split.y.get("boxes"), split.y.get("labels")
        assert bool(torch.isfinite(boxes).all()) and bool(((boxes >= 0) & (boxes <= 16)).all())
        assert bool(((labels == -1) | ((labels >= 1) & (labels < data.num_classes))).all())


@RUNS
@given(json_path, json_value, st.sampled_from(["skip", "error"]))
def test_damaged_coco_json_loads_valid_targets_or_is_one_error(coco_folder: Path, path: list, value: object,
                                                               on_corrupt: str) -> None:
    (coco_folder / "train.json").write_text(json.dumps(replace_at(coco_doc(), path, value)))
    check_coco(coco_folder, on_corrupt)


@FAST
@given(st.data())
def test_coco_json_damaged_byte_by_byte_is_valid_or_one_error(coco_folder: Path, data) -> None:
    blob = json.dumps(coco_doc()).encode()
    (coco_folder / "train.json").write_bytes(data.draw(damaged(blob)))
    check_coco(coco_folder, "error")


# -- a run's files ----------------------------------------------------------------------------
def copy_run(trained_run: Run, to: Path, finished: bool = True) -> Path:
    """A fresh copy of the digits run (every example damages its own). Unfinished: as a kill
    after the last checkpoint leaves it, no test line and no weights hashes (test_defects)."""
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(trained_run.path, to)
    if not finished:
        provenance = json.loads((to / PROVENANCE).read_text())
        provenance["finished"] = None
        del provenance["weights"]
        (to / PROVENANCE).write_text(json.dumps(provenance))
        lines = (to / METRICS).read_text().splitlines(keepends=True)
        (to / METRICS).write_text("".join(line for line in lines if '"event": "test"' not in line))
    return to


def check_opens(path: Path, digits) -> Run | None:
    """Run.load, and what an analysis then asks of the run (its records, a prediction, the
    task's scores on digits); None after one CnnlabError."""
    try:
        run = Run.load(path)
        run.classes, run.metrics(), run.test_result()
        probabilities = run.predict(torch.zeros(2, *run.input_shape))
        run.scores(digits)
    except CnnlabError:
        return None
    assert bool(torch.isfinite(probabilities).all())
    state = run.model.state_dict()
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
    return run


@RUNS
@given(st.data())
def test_damaged_weights_of_a_finished_run_never_load(trained_run: Run, tmp_path: Path, data) -> None:
    """Its SHA-256 is recorded: any change is refused, wherever it is."""
    run_copy = copy_run(trained_run, tmp_path / "run")
    original = (run_copy / WEIGHTS).read_bytes()
    blob = data.draw(damaged(original, head=2048))
    assume(blob != original)
    (run_copy / WEIGHTS).write_bytes(blob)
    with pytest.raises(CnnlabError):
        Run.load(run_copy)


@RUNS
@given(st.data())
def test_damaged_weights_of_an_unfinished_run_load_finite_or_are_one_error(trained_run: Run, tmp_path: Path, digits, data) -> None:
    unfinished = copy_run(trained_run, tmp_path / "run", finished=False)
    original = (unfinished / WEIGHTS).read_bytes()
    (unfinished / WEIGHTS).write_bytes(data.draw(damaged(original, head=2048)))
    check_opens(unfinished, digits)


@RUNS
@given(json_path, json_value)
def test_damaged_provenance_opens_a_working_run_or_is_one_error(trained_run: Run, tmp_path: Path, digits, path: list,
                                                               value: object) -> None:
    run_copy = copy_run(trained_run, tmp_path / "run")
    doc = json.loads((run_copy / PROVENANCE).read_text())
    (run_copy / PROVENANCE).write_text(json.dumps(replace_at(doc, path, value)))
    check_opens(run_copy, digits)


@RUNS
@given(st.data())
def test_provenance_damaged_byte_by_byte_opens_or_is_one_error(trained_run: Run, tmp_path: Path, digits, data) -> None:
    run_copy = copy_run(trained_run, tmp_path / "run")
    (run_copy / PROVENANCE).write_bytes(data.draw(damaged((run_copy / PROVENANCE).read_bytes())))
    check_opens(run_copy, digits)


config_value = st.one_of(st.integers(-(2**65), 2**65), st.floats(), st.text(max_size=8), st.booleans(),
                         st.sampled_from(["mlp", "vgg16", "resnet20", "cuda", "adam", "fast", "flip"]))


@RUNS
@given(st.sampled_from(["model", "epochs", "lr", "momentum", "seed", "dp", "device", "image_size", "augment", "nproc"]),
       config_value, st.data())
def test_damaged_config_toml_opens_or_is_one_error(trained_run: Run, tmp_path: Path, digits, key: str, value: object,
                                                   data) -> None:
    run_copy = copy_run(trained_run, tmp_path / "run")
    text = (run_copy / CONFIG).read_text()
    if data.draw(st.booleans()):
        import tomllib

        text = tomli_w.dumps({**tomllib.loads(text), key: value})
    else:
        text = data.draw(damaged(text.encode())).decode(errors="replace")
    (run_copy / CONFIG).write_text(text)
    check_opens(run_copy, digits)


record = st.fixed_dictionaries({"event": st.sampled_from(["epoch", "test", "stopped"]), "epoch": st.integers(1, 99)},
                               optional={"train_loss": st.floats(), "val_acc": st.floats(0, 1), "note": st.text(max_size=5)})
garbage_line = st.one_of(st.text(max_size=12).filter(lambda t: "\n" not in t and t.strip()),
                         json_value.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
                         st.just('{"event": "test", "test_acc": "high"}'))


@FAST
@given(st.lists(record, max_size=5), st.none() | st.tuples(st.integers(0, 5), garbage_line), st.integers(0, 40))
def test_metrics_jsonl_gives_its_records_drops_a_cut_last_line_and_names_a_bad_one(
    trained_run: Run, tmp_path: Path, records: list[dict], garbage: tuple[int, str] | None, cut: int,
) -> None:
    run_copy = copy_run(trained_run, tmp_path / "run")
    lines = [json.dumps(r) + "\n" for r in records]
    if garbage is not None:
        lines.insert(min(garbage[0], len(lines)), garbage[1] + "\n")
    half = json.dumps({"event": "epoch", "epoch": 7, "train_loss": 0.5})[: cut]  # a kill mid-append: no newline
    (run_copy / METRICS).write_text("".join(lines) + half)
    run = Run.load(run_copy, weights="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if garbage is not None:
            with pytest.raises(CnnlabError, match=rf"metrics.jsonl line {lines.index(garbage[1] + chr(10)) + 1} is"):
                run.metrics()
            return
        got = run.metrics()
    assert json.dumps(got, sort_keys=True) == json.dumps(json.loads(json.dumps(records)), sort_keys=True)
    assert len(caught) == (1 if half.strip() else 0)


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run stopped in its first epoch, after a checkpoint at step 14 (checkpoint_every 7):
    a resume from it trains the rest of the epoch."""
    import cnnlab
    from cnnlab.training import callbacks

    out = tmp_path_factory.mktemp("interrupted") / "run"

    def stop_at_15(run, parts, pos, loss) -> None:
        if pos.step == 15:
            raise _Stop

    with pytest.MonkeyPatch.context() as m:
        m.setattr(callbacks, "check_finite_loss", stop_at_15)
        with pytest.raises(_Stop):
            cnnlab.train(model="lenet5", data="digits", epochs=2, batch_size=32, checkpoint_every=7, out=out, quiet=True)
    return out


def resumable(kind: str, trained_run: Run, interrupted: Path, to: Path) -> Path:
    """A fresh copy of a run to resume: stopped mid-epoch ('mid') or after its last epoch ('end')."""
    if kind == "end":
        return copy_run(trained_run, to, finished=False)
    shutil.rmtree(to, ignore_errors=True)
    return Path(shutil.copytree(interrupted, to))


POSITION_FIELDS = ["epoch", "batch", "step", "loss_sum", "sums", "seen", "train_seconds", "best_score", "best_epoch"]
tensors = st.builds(lambda shape, dtype, fill: torch.full(shape, fill).to(dtype),
                    st.lists(st.integers(0, 3), max_size=3).map(tuple),
                    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8]),
                    st.sampled_from([0.0, 1.0, float("nan")]))
checkpoint_value = st.one_of(json_value, tensors, st.lists(tensors, max_size=2))
checkpoint_place = st.one_of(
    st.sampled_from(POSITION_FIELDS).map(lambda k: ["position", k]),
    st.sampled_from(["metrics_bytes", "torch_rng", "augment_rng", "optimizer", "schedule", "model", "position"]).map(lambda k: [k]),
    st.sampled_from(["lr", "momentum", "weight_decay", "nesterov", "params"]).map(lambda k: ["optimizer", "param_groups", 0, k]),
    st.sampled_from(["state", "param_groups"]).map(lambda k: ["optimizer", k]),
    st.sampled_from(["total_steps", "last_epoch", "_last_lr", "base_lrs", "_step_count"]).map(lambda k: ["schedule", k]),
    st.sampled_from(["normalize.mean", "net.classifier.fc3.bias", "net.features.conv1.weight"]).map(lambda k: ["model", k]),
)


def set_in(state: object, path: list, value: object) -> object:
    """The checkpoint with `value` at `path` (dict keys and list indices, created where missing)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(state, dict):
        return {**state, head: set_in(state.get(head), rest, value)}
    if isinstance(state, list) and isinstance(head, int) and state:
        return [set_in(v, rest, value) if i == head % len(state) else v for i, v in enumerate(state)]
    return value


def check_resume(path: Path, digits) -> None:
    """What `train --resume` does before its loop, then one step: one CnnlabError, or parts that train."""
    try:
        run = Run.load(path, weights="none")
        state = load_state(path / CHECKPOINT, run)
        parts, pos = prepare(run, digits, state)
    except CnnlabError:
        return
    assert 0 <= pos.epoch <= run.config.epochs and pos.step == pos.epoch * parts.steps_per_epoch + pos.batch
    if pos.epoch == run.config.epochs:
        return  # every step done: the resume only scores the test split
    x, y, groups = parts.transform(parts.train.x[:8], parts.train.y[:8])
    loss, _ = parts.step(x, y, groups)
    loss.backward()
    parts.optimizer.step()
    parts.schedule.step()


@RUNS
@given(st.sampled_from(["mid", "end"]), checkpoint_place, checkpoint_value)
def test_a_checkpoint_damaged_field_by_field_resumes_or_is_one_error(trained_run: Run, interrupted: Path,
                                                                    tmp_path: Path, digits, kind: str, place: list,
                                                                    value: object) -> None:
    unfinished = resumable(kind, trained_run, interrupted, tmp_path / "run")
    state = torch.load(unfinished / CHECKPOINT, weights_only=True)
    torch.save(set_in(state, place, value), unfinished / CHECKPOINT)
    check_resume(unfinished, digits)


@RUNS
@given(st.sampled_from(["mid", "end"]), st.data())
def test_a_checkpoint_damaged_byte_by_byte_resumes_or_is_one_error(trained_run: Run, interrupted: Path,
                                                                   tmp_path: Path, digits, kind: str, data) -> None:
    unfinished = resumable(kind, trained_run, interrupted, tmp_path / "run")
    (unfinished / CHECKPOINT).write_bytes(data.draw(damaged((unfinished / CHECKPOINT).read_bytes(), head=512)))
    check_resume(unfinished, digits)


@pytest.mark.slow
@MORE
@given(st.data())
def test_every_reader_holds_on_many_more_damaged_files(tmp_path: Path, trained_run: Run, interrupted: Path,
                                                       coco_folder: Path, digits, data) -> None:
    array = data.draw(idx_arrays)
    write_idx(tmp_path / "a.gz", array)
    check_idx(data.draw(damaged((tmp_path / "a.gz").read_bytes(), head=16)), tmp_path, array)
    check_image(data.draw(damaged(data.draw(image_files()), head=64)), 3, (9, 7))
    coco = replace_at(coco_doc(), data.draw(json_path), data.draw(json_value))
    (coco_folder / "train.json").write_text(json.dumps(coco))
    check_coco(coco_folder, "skip")
    run = copy_run(trained_run, tmp_path / "run", finished=False)
    provenance = json.loads((run / PROVENANCE).read_text())
    (run / PROVENANCE).write_text(json.dumps(replace_at(provenance, data.draw(json_path), data.draw(json_value))))
    (run / WEIGHTS).write_bytes(data.draw(damaged((run / WEIGHTS).read_bytes(), head=2048)))
    check_opens(run, digits)
    run = resumable(data.draw(st.sampled_from(["mid", "end"])), trained_run, interrupted, tmp_path / "run")
    state = torch.load(run / CHECKPOINT, weights_only=True)
    torch.save(set_in(state, data.draw(checkpoint_place), data.draw(checkpoint_value)), run / CHECKPOINT)
    check_resume(run, digits)
