"""Hypothesis over what a user types: the CLI's parsers (shapes like 3x32x32, budgets like 2m,
eps lists, --at I,J), the training flags and TOML config files. Each input gives a value within
its documented range, or one CnnlabError; through the real command line, a non-zero exit and
no traceback, and nothing created. 50 examples for each parser and 25 for each run of the
command line here; the slow test runs 1,000 through the parsers."""

from __future__ import annotations

import math
import tempfile
from dataclasses import fields
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.attack.robustness import parse_eps
from cnnlab.cli.options import parse_shape
from cnnlab.config import SEEDS, TrainConfig, parse_budget
from cnnlab.data.images import MAX_PIXELS
from cnnlab.errors import CnnlabError
from cnnlab.inside.conv import parse_at

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MORE = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text a user might type where a number goes: numbers of every size and spelling, and junk.
number_text = st.one_of(
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "0x10", "1_000", " 3 ", "", "1e-400", "٣", "9" * 5000]),
    st.text(max_size=6),
)
shape_text = st.one_of(st.lists(number_text, max_size=4).map("x".join), st.text(max_size=16))
budget_text = st.one_of(st.tuples(number_text, st.sampled_from(["", "s", "m", "h", "S", "M", "d"])).map("".join),
                        st.text(max_size=8))
list_text = st.one_of(st.lists(number_text, max_size=4).map(",".join), st.text(max_size=16))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# -- the parsers ----------------------------------------------------------------------------
def check_shape(text: str) -> None:
    try:
        shape = parse_shape(text)
    except CnnlabError:
        return
    assert len(shape) in (3, 4) and all(_is_int(v) and v >= 1 for v in shape)  # images, or clips frames first
    frames = shape[0] if len(shape) == 4 else 1
    assert frames * shape[-2] * shape[-1] <= MAX_PIXELS and math.prod(shape) <= 3 * MAX_PIXELS


def check_budget(text: str) -> None:
    try:
        seconds = parse_budget(text)
    except CnnlabError:
        return
    assert isinstance(seconds, float) and 0 < seconds < math.inf


def check_eps(text: str, norm: str) -> None:
    try:
        radii = parse_eps(text, norm)
    except CnnlabError:
        return
    assert radii and all(math.isfinite(r) and r >= 0 for r in radii)
    assert norm == "l2" or all(r <= 1 for r in radii)


def check_at(text: str) -> None:
    try:
        i, j = parse_at(text)
    except CnnlabError:
        return
    assert _is_int(i) and _is_int(j)


@FAST
@given(shape_text)
def test_shapes_parse_to_a_bounded_input_or_one_error(text: str) -> None:
    check_shape(text)


@FAST
@given(budget_text)
def test_budgets_parse_to_finite_seconds_or_one_error(text: str) -> None:
    check_budget(text)


@FAST
@given(st.integers(1, 10**6), st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("", 1)]))
def test_a_budget_means_what_it_says(n: int, unit: tuple[str, int]) -> None:
    assert parse_budget(f"{n}{unit[0]}") == n * unit[1]


@FAST
@given(list_text, st.sampled_from(["linf", "l2"]))
def test_eps_lists_parse_to_radii_of_their_norm_or_one_error(text: str, norm: str) -> None:
    check_eps(text, norm)


@FAST
@given(list_text)
def test_at_parses_to_two_integers_or_one_error(text: str) -> None:
    check_at(text)


# -- TrainConfig from TOML ------------------------------------------------------------------
NAMES = [f.name for f in fields(TrainConfig)]
toml_value = st.recursive(
    st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
              st.booleans(), st.dates(), st.sampled_from(["sgd", "adam", "cuda", "auto", "none", "fast", "crop,flip"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=5,
)
toml_doc = st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), toml_value, max_size=5)


def check_config_file(text: str) -> None:
    """from_toml, then every check a training makes before it creates anything: CnnlabError or a
    config whose numbers are all usable."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(text)
        try:
            cfg = TrainConfig.from_toml(path).resolved()
        except CnnlabError:
            return
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        assert type(value) is type(f.default), f.name
        assert not isinstance(value, float) or math.isfinite(value), f.name
    assert 0 <= cfg.seed < SEEDS and 0 <= cfg.momentum < 1 and cfg.lr > 0 and cfg.epochs >= 1


@FAST
@given(toml_doc)
def test_toml_configs_give_a_usable_config_or_one_error(doc: dict) -> None:
    check_config_file(tomli_w.dumps(doc))


@FAST
@given(st.text(max_size=60))
def test_any_text_as_a_config_file_is_a_config_or_one_error(text: str) -> None:
    check_config_file(text)


@FAST
@given(st.dictionaries(st.sampled_from(NAMES), toml_value, max_size=4))
def test_a_python_config_of_any_values_is_checked_in_one_sentence(values: dict) -> None:
    """TrainConfig(**values) from Python, typed or not: resolved() is the config or one CnnlabError."""
    try:
        cfg = TrainConfig(**values).resolved()
    except CnnlabError:
        return
    assert all(not isinstance(getattr(cfg, f.name), float) or math.isfinite(getattr(cfg, f.name)) for f in fields(cfg))


# -- through the command line ---------------------------------------------------------------
FLAGS = [f"--{f.name.replace('_', '-')}" for f in fields(TrainConfig) if f.type != "bool" and f.name != "data"]
CLI = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_train_flag(cli, flag: str, value: str) -> None:
    """A training flag with any value: refused (a usage error or one sentence), never a
    traceback, never a run directory. The data folder does not exist, so a value that passes
    every check ends at loading the data, before anything is written."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        r = cli("train", "--data", f"imagefolder:{folder}/no-such-folder", "--out", out, f"{flag}={value}")
        assert r.code in (1, 2) and "Traceback" not in r.err, r.err
        assert r.code == 2 or (r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1), r.err
        assert not out.exists()


@CLI
@given(st.sampled_from(FLAGS), number_text)
def test_training_flags_with_any_value_fail_cleanly(cli, flag: str, value: str) -> None:
    check_train_flag(cli, flag, value)


def check_commands(cli, shape: str, eps: str, norm: str, at: str) -> None:
    r = cli("summary", "lenet5", "--input", shape, "--json")
    assert r.code in (0, 1, 2) and "Traceback" not in r.err, r.err
    r = cli("attack", "no/such/run", "--eps", eps, "--norm", norm)
    assert r.code in (1, 2) and "Traceback" not in r.err, r.err
    r = cli("conv", "--at", at, "--json")
    assert r.code in (0, 1, 2) and "Traceback" not in r.err, r.err


@CLI
@given(shape_text, list_text, st.sampled_from(["linf", "l2", "l1"]), list_text)
def test_parsed_options_fail_cleanly_through_the_command_line(cli, shape: str, eps: str, norm: str, at: str) -> None:
    check_commands(cli, shape, eps, norm, at)


@pytest.mark.slow
@MORE
@given(shape_text, budget_text, list_text, st.sampled_from(["linf", "l2"]), toml_doc)
def test_parsers_and_configs_hold_on_many_more_inputs(shape: str, budget: str, text: str, norm: str, doc: dict) -> None:
    check_shape(shape)
    check_budget(budget)
    check_eps(text, norm)
    check_at(text)
    check_config_file(tomli_w.dumps(doc))
