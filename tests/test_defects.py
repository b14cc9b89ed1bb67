"""Defects found by trying cnnlab as a user would, each kept fixed by a test: damaged run files
(provenance.json, metrics.jsonl, checkpoint.pt, model.safetensors), values no training can use,
outputs that are not regular files, splits too small to exist, untrained weights. Every one is
one sentence and exit 1, never a traceback, never a silent success, never runaway memory."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write, atomic_write_text
from cnnlab.run import CHECKPOINT, METRICS, PROVENANCE, WEIGHTS, Run
from conftest import cnnlab_process


def one_sentence(r, *says: str) -> None:
    """Exit 1 with `error: ...` on one line, naming what `says` lists; nothing on stdout."""
    assert r.code == 1, (r.out, r.err)
    assert "Traceback" not in r.err and r.out == ""
    assert r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1, r.err
    for text in says:
        assert text in r.err, r.err


@pytest.fixture
def run_copy(trained_run: Run, tmp_path: Path) -> Path:
    """A copy of the finished digits run, free to damage."""
    return Path(shutil.copytree(trained_run.path, tmp_path / "run"))


@pytest.fixture
def unfinished(run_copy: Path) -> Path:
    """The run as a kill after its last checkpoint leaves it: no test line, not finished, no
    weights hashes (recorded at the end); `train --resume` only has to score the test split."""
    provenance = json.loads((run_copy / PROVENANCE).read_text())
    provenance["finished"] = None
    del provenance["weights"]
    (run_copy / PROVENANCE).write_text(json.dumps(provenance))
    lines = (run_copy / METRICS).read_text().splitlines(keepends=True)
    (run_copy / METRICS).write_text("".join(line for line in lines if '"event": "test"' not in line))
    return run_copy


def _image(tmp_path: Path) -> Path:
    Image.new("L", (28, 28), 128).save(tmp_path / "d.png")
    return tmp_path / "d.png"


# -- the command line -----------------------------------------------------------------------
def test_attack_l2_eps_that_is_not_a_number_is_one_sentence(cli, trained_run: Run) -> None:
    one_sentence(cli("attack", trained_run.path, "--norm", "l2", "--eps", "abc"), "--eps must be numbers")


@pytest.mark.parametrize("command", ["predict", "evaluate", "attack"])
def test_weights_none_is_refused_where_it_would_analyse_an_untrained_model(cli, trained_run: Run, tmp_path: Path,
                                                                           command: str) -> None:
    extra = [_image(tmp_path)] if command == "predict" else []
    one_sentence(cli(command, trained_run.path, *extra, "--weights", "none"), "--weights must be model")


# -- provenance.json ------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"seed": 0}', "\xff\xfe"])
@pytest.mark.parametrize("command", ["predict", "evaluate", "report", "verify", "card"])
def test_a_damaged_provenance_is_one_sentence_naming_it(cli, run_copy: Path, tmp_path: Path, text: str,
                                                        command: str) -> None:
    (run_copy / PROVENANCE).write_bytes(text.encode("latin-1"))
    extra = [_image(tmp_path)] if command == "predict" else []
    one_sentence(cli(command, run_copy, *extra), str(run_copy / PROVENANCE))


@pytest.mark.parametrize("command", ["predict", "report", "evaluate"])
def test_an_absurd_input_shape_is_refused_when_the_run_is_loaded(cli, run_copy: Path, tmp_path: Path,
                                                                 command: str) -> None:
    """[1, 100000, 100000] made predict allocate until the kernel killed it (24 GB)."""
    provenance = json.loads((run_copy / PROVENANCE).read_text())
    provenance["data"]["input_shape"] = [1, 100_000, 100_000]
    (run_copy / PROVENANCE).write_text(json.dumps(provenance))
    extra = [_image(tmp_path)] if command == "predict" else []
    one_sentence(cli(command, run_copy, *extra), str(run_copy / PROVENANCE), "1x100000x100000")


def test_a_model_too_large_is_refused_before_it_is_built(run_copy: Path) -> None:
    """Within the pixel bound, an MLP on 1x4000x4000 would still hold 4.8 billion parameters (19 GB)."""
    provenance = json.loads((run_copy / PROVENANCE).read_text())
    provenance["data"]["input_shape"] = [1, 4000, 4000]
    (run_copy / PROVENANCE).write_text(json.dumps(provenance))
    config = (run_copy / "config.toml").read_text()
    (run_copy / "config.toml").write_text(config.replace('model = "lenet5"', 'model = "mlp"'))
    with pytest.raises(CnnlabError, match="do not fit this model"):
        Run.load(run_copy)  # the weights file's shapes, read from its header
    with pytest.raises(CnnlabError, match="parameters for input 1x4000x4000"):
        Run.load(run_copy, weights="none")  # no weights to compare with: the parameter bound


def test_a_task_the_model_does_not_do_is_refused_when_the_run_is_loaded(cli, run_copy: Path) -> None:
    """'segment' recorded for a LeNet classifier gave tracebacks in predict and evaluate."""
    provenance = json.loads((run_copy / PROVENANCE).read_text())
    provenance["task"] = "segment"
    (run_copy / PROVENANCE).write_text(json.dumps(provenance))
    one_sentence(cli("evaluate", run_copy), "says the run learned the segment task, which lenet5 does not do")


# -- metrics.jsonl --------------------------------------------------------------------------
def test_a_half_written_last_metrics_line_is_dropped_with_a_warning(cli, run_copy: Path, trained_run: Run) -> None:
    with open(run_copy / METRICS, "a") as f:
        f.write('{"event": "epoch", "epoch": 5, "train_lo')  # a kill in the middle of an append
    with pytest.warns(UserWarning, match="last line was cut short"):
        assert Run.load(run_copy).metrics() == trained_run.metrics()
    with pytest.warns(UserWarning, match="last line was cut short"):
        r = cli("card", run_copy)
    assert r.code == 0 and "Traceback" not in r.err


@pytest.mark.parametrize("garbage", ["not json at all\n", "[1, 2]\n", '{"event": "test", "test_acc": "high"}\n'])
@pytest.mark.parametrize("command", ["report", "card"])
def test_garbage_in_metrics_is_one_sentence_naming_the_line(cli, run_copy: Path, garbage: str, command: str) -> None:
    lines = (run_copy / METRICS).read_text().splitlines(keepends=True)
    (run_copy / METRICS).write_text("".join([lines[0], garbage, *lines[1:]]))
    one_sentence(cli(command, run_copy), f"{run_copy / METRICS} line 2")


# -- checkpoint.pt --------------------------------------------------------------------------
def _position(**values: object):
    return lambda s: {**s, "position": {**s["position"], **values}}


def _model(change):
    return lambda s: {**s, "model": change(dict(s["model"]))}


def _without(key: str):
    return lambda s: {k: v for k, v in s.items() if k != key}


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda s: {**s, "metrics_bytes": 10**8}, "bytes of metrics.jsonl"),
        (_position(epoch=10**6), "at epoch 1000000 of a run of 4 epochs"),
        (_position(epoch=3, best_epoch=3), "records 4 finished epoch(s)"),
        (_position(step=5), "not one of a run of"),
        (_position(loss_sum=float("nan")), "not finite numbers"),
        (_position(batch="three"), "are not all counts"),
        (lambda s: {**s, "position": {k: v for k, v in s["position"].items() if k != "seen"}}, "position is not a record"),
        (_without("optimizer"), "has no optimizer"),
        (_model(lambda m: {k: v for k, v in m.items() if k != "net.classifier.fc3.bias"}), "missing"),
        (_model(lambda m: {**m, "normalize.mean": torch.zeros(3)}), "do not fit this model"),
        (_model(lambda m: {**m, "normalize.mean": torch.zeros(1, 1, 1, 1, dtype=torch.int64)}), "int64"),
        (lambda s: {**s, "torch_rng": torch.zeros(3)}, "torch_rng is not a random generator's state"),
        (lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": []}}, "optimizer state does not fit"),
        (lambda s: {**s, "schedule": {**s["schedule"], "total_steps": 3}}, "schedule is not the one config.toml asks for"),
        (lambda s: [1, 2], "holds a list"),
    ],
)
def test_a_damaged_checkpoint_is_one_sentence_and_changes_nothing(cli, unfinished: Path, change, says: str) -> None:
    """metrics_bytes=10**8 used to grow metrics.jsonl to 100 MB of NUL bytes; epoch=10**6 to exit 0 as finished."""
    torch.save(change(torch.load(unfinished / CHECKPOINT, weights_only=True)), unfinished / CHECKPOINT)
    before = (unfinished / METRICS).read_bytes()
    one_sentence(cli("train", "--resume", unfinished, "--quiet"), says)
    assert (unfinished / METRICS).read_bytes() == before
    assert not Run.load(unfinished, weights="none").finished


def test_an_intact_checkpoint_still_resumes(cli, unfinished: Path) -> None:
    r = cli("train", "--resume", unfinished, "--quiet", "--json")
    assert r.code == 0, r.err
    assert Run.load(unfinished).finished and json.loads(r.out)["test_acc"] > 0.5


def test_a_pickled_checkpoint_runs_no_code(cli, unfinished: Path, tmp_path: Path) -> None:
    """What held up: `torch.load(weights_only=True)` refuses a pickle that would run code."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"position": Payload()}, unfinished / CHECKPOINT)
    one_sentence(cli("train", "--resume", unfinished, "--quiet"), "cannot be read safely")
    assert not marker.exists()


# -- model.safetensors ----------------------------------------------------------------------
def _flip_a_byte(run: Path) -> None:
    blob = bytearray((run / WEIGHTS).read_bytes())
    blob[-100] ^= 0x01  # inside the tensor bytes: the file stays readable, its numbers change
    (run / WEIGHTS).write_bytes(bytes(blob))


def _nan_weight(run: Path) -> None:
    state = load_file(run / WEIGHTS)
    state["net.classifier.fc1.bias"][0] = float("nan")
    save_file(state, run / WEIGHTS)


def _int64_weights(run: Path) -> None:
    save_file({k: v.to(torch.int64) for k, v in load_file(run / WEIGHTS).items()}, run / WEIGHTS)


@pytest.mark.parametrize("command", ["predict", "evaluate", "report", "card"])
def test_a_flipped_byte_in_the_weights_is_caught_by_the_recorded_hash(cli, run_copy: Path, tmp_path: Path,
                                                                      command: str) -> None:
    _flip_a_byte(run_copy)
    extra = [_image(tmp_path)] if command == "predict" else []
    one_sentence(cli(command, run_copy, *extra), "SHA-256 differs")


@pytest.mark.parametrize("damage, says", [(_nan_weight, "NaN or infinite"), (_int64_weights, "int64")])
@pytest.mark.parametrize("command", ["predict", "evaluate", "card"])
def test_nan_or_retyped_weights_are_refused_without_a_recorded_hash(cli, unfinished: Path, tmp_path: Path,
                                                                    damage, says: str, command: str) -> None:
    damage(unfinished)
    extra = [_image(tmp_path)] if command == "predict" else []
    one_sentence(cli(command, unfinished, *extra), str(unfinished / WEIGHTS), says)


def test_a_truncated_weights_file_is_still_one_sentence(cli, run_copy: Path, tmp_path: Path) -> None:
    """What held up: a cut-off safetensors file names itself, before any hash is computed."""
    (run_copy / WEIGHTS).write_bytes((run_copy / WEIGHTS).read_bytes()[:1000])
    one_sentence(cli("predict", run_copy, _image(tmp_path)), "is not a readable safetensors file")


# -- what cnnlab writes ---------------------------------------------------------------------
def test_conv_out_never_replaces_a_symlink_or_a_fifo(cli, tmp_path: Path) -> None:
    image = _image(tmp_path)
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    one_sentence(cli("conv", "--image", image, "--out", link), "is a symbolic link, not a regular file")
    assert link.is_symlink() and target.read_text() == "keep me"
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    one_sentence(cli("conv", "--image", image, "--out", fifo), "is a FIFO")
    assert fifo.is_fifo()
    (tmp_path / "folder.png").mkdir()
    one_sentence(cli("conv", "--image", image, "--out", tmp_path / "folder.png"), "is a folder")


def test_a_failed_write_names_the_users_path_not_the_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"

    def denied(tmp: Path) -> None:
        raise PermissionError(13, "Permission denied", str(tmp))

    with pytest.raises(OSError) as e:
        atomic_write(path, denied)
    assert e.value.filename == str(path) and e.value.strerror == "Permission denied"
    atomic_write_text(path, "still writable")
    assert path.read_text() == "still writable"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, where no file can be created")
def test_an_unwritable_out_is_named_as_given(cli, tmp_path: Path) -> None:
    r = cli("conv", "--image", _image(tmp_path), "--out", "/proc/conv.png")
    one_sentence(r, "/proc/conv.png")
    assert ".tmp-" not in r.err


# -- values no training can use, refused before anything is created ---------------------------
BAD_TRAIN_FLAGS = [
    (["--momentum", "-1"], "momentum must be in [0, 1)"),
    (["--momentum", "nan"], "momentum must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--image-size", "-5"], "image size must be 0"),
    (["--seed", str(2**63)], "seed must be"),
    (["--seed", str(2**40)], "seed must be an integer from 0 to 4294967295"),
    (["--budget", "inf"], "--budget must be a time"),
    (["--budget", "1e300"], "a positive time of at most a year"),
    (["--nproc", "99", "--batch-size", "512"], "--nproc 99 starts one process per"),
]
if not torch.cuda.is_available():
    BAD_TRAIN_FLAGS.append((["--device", "cuda"], "torch sees no CUDA GPU"))


@pytest.mark.parametrize("flags, says", BAD_TRAIN_FLAGS)
def test_bad_training_values_are_refused_before_the_run_directory_exists(cli, tmp_path: Path, flags: list[str],
                                                                        says: str) -> None:
    out = tmp_path / "run"
    one_sentence(cli("train", "--epochs", "1", "--out", out, *flags), says)
    assert not out.exists()  # so a retry does not find "already holds files"


@pytest.mark.parametrize(
    "text, says",
    [("lr = " + "9" * 400, "'lr' is too large a number"), ("epochs = " + "9" * 5000, "is not valid TOML"),
     ("seed = 18446744073709551616", "seed must be below 2**63"), ("momentum = nan", "momentum must be a finite")],
)
def test_a_config_file_with_an_absurd_number_is_one_sentence(cli, tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "c.toml").write_text(text + "\n")
    one_sentence(cli("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "run"), says)
    assert not (tmp_path / "run").exists()


def test_imagefolder_too_small_for_a_test_split_is_refused(cli, tmp_path: Path) -> None:
    """2 images per class gave rc 0, 'test accuracy nan' and, with --json, NaN (not JSON)."""
    for name in ("a", "b"):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 60 * i + (120 if name == "a" else 0)).save(tmp_path / "pics" / name / f"{i}.png")
    out = tmp_path / "run"
    one_sentence(cli("train", "--data", f"imagefolder:{tmp_path / 'pics'}", "--epochs", "1", "--out", out, "--json"),
                 "too few images for a test split")
    assert not out.exists()


def test_json_output_never_prints_nan(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.cli.output import emit

    emit({"test_acc": float("nan"), "losses": [1.0, float("inf")]})

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    assert json.loads(capsys.readouterr().out, parse_constant=refuse) == {"test_acc": None, "losses": [1.0, None]}


@pytest.mark.parametrize(
    "args, says",
    [
        (["summary", "lenet5", "--input", "3x1000000000x1000000000"], "more than the largest image"),
        (["bench", "lenet5", "--input", "1x1000000x1000000"], "more than the largest image"),
        (["conv", "--padding", "1000000000"], "use less padding"),
    ],
)
def test_sizes_in_the_billions_are_refused_at_once(cli, args: list[str], says: str) -> None:
    one_sentence(cli(*args), says)


def test_an_allocation_the_machine_cannot_make_is_one_sentence(tmp_path: Path) -> None:
    """A batch of 10^11 images: torch's allocator fails; the user reads one sentence. Run with
    a 32 GB address-space limit so that a machine which overcommits memory refuses it too."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (32 << 30, 32 << 30))

    exe = Path(sys.executable).with_name("cnnlab")
    p = subprocess.run([str(exe), "bench", "lenet5", "--batch-size", str(10**11), "--steps", "1"], preexec_fn=limit,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: this machine has not enough memory"), p.stderr


def test_warnings_print_as_one_line(run_copy: Path) -> None:
    with open(run_copy / METRICS, "a") as f:
        f.write('{"event": "te')
    _, err = (p := cnnlab_process("report", run_copy)).communicate(timeout=120)
    assert p.returncode == 0, err
    assert err.startswith("warning: ") and "cut short" in err and len(err.strip().splitlines()) == 1, err
