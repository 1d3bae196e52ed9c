"""SPEC 5 "Job options": the ``job_`` keywords of comp and comp_dynamic, what they may be,
that they never count in the signature, where they are kept and shown; the totals of
resources a parmake shares out.

(What runners do with them is tested with the runners; bad values are also rows of
tests/test_bad_input.py.)
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from nbmake_ext import Context, InvalidJob, Promise
from nbmake_ext.core import options as opt
from nbmake_ext.core.options import NO_OPTIONS, JobOptions, OptionError
from nbmake_ext.errors import BadUsage
from nbmake_ext.kernel import machine
from contexts import new_context

CALLS: list[tuple] = []


def takes_anything(x, *args, **kwargs):
    CALLS.append(("takes_anything", x, args, kwargs))
    return x


def child_maker(context, n):
    CALLS.append(("child_maker", n))
    return [context.comp(takes_anything, i, job_id=f"child-{i}", job_retries=1,
                         job_resources={"licence": 1}, tag="c") for i in range(n)]


@pytest.fixture(autouse=True)
def _clean_calls():
    CALLS.clear()
    yield
    CALLS.clear()


# -- values --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, size", [
    ("8GB", 8 * 10**9), ("512MB", 512 * 10**6), ("200M", 200 * 10**6), ("1.5GiB", 3 * 2**29),
    ("512Mi", 512 * 2**20), ("2kB", 2000), ("2KiB", 2048), ("1TB", 10**12), ("100", 100),
    ("100B", 100), (" 8 gb ", 8 * 10**9), ("1e3K", 10**6), (".5G", 5 * 10**8),
])
def test_memory_sizes_decimal_and_binary(text, size):
    assert opt.parse_size(text) == size
    assert opt.parse_amount("mem", text) == size


@pytest.mark.parametrize("text", ["", "GB", "lots", "-1GB", "8 XB", "1.5.5G", "8GBB", "8 G B"])
def test_memory_sizes_that_are_not(text):
    with pytest.raises(OptionError, match="amount of memory"):
        opt.parse_size(text)


@pytest.mark.parametrize("name, value, amount", [
    ("gpus", 1, 1), ("cpus", 2.5, 2.5), ("licence", 0, 0), ("gpus", 2.0, 2),
    ("mem", 4096, 4096), ("mem", "1GB", 10**9),
])
def test_amounts(name, value, amount):
    got = opt.parse_amount(name, value)
    assert got == amount and type(got) is type(amount)


@pytest.mark.parametrize("name, value", [
    ("gpus", -1), ("gpus", "1"), ("gpus", True), ("cpus", math.nan), ("cpus", math.inf),
    ("licence", None), ("mem", -5), ("mem", [1]),
])
def test_amounts_that_are_not(name, value):
    with pytest.raises(OptionError, match=">= 0"):
        opt.parse_amount(name, value)


def test_options_parse_and_are_one_shared_instance_when_none_is_set():
    got = opt.parse_options("j", {"job_timeout": 5, "job_retries": 1,
                                  "job_resources": {"mem": "1GB", "gpus": 1}})
    assert got == JobOptions(5.0, 1, {"gpus": 1, "mem": 10**9})
    assert opt.parse_options("j", {}) is NO_OPTIONS
    assert opt.parse_options("j", None) is NO_OPTIONS
    none_set = {"job_timeout": None, "job_retries": 0, "job_resources": {}}
    assert opt.parse_options("j", none_set) is NO_OPTIONS
    assert not NO_OPTIONS and got
    # jobs registered alike share one instance (registration stays fast)
    again = opt.parse_options("k", {"job_timeout": 5, "job_retries": 1,
                                    "job_resources": {"mem": "1GB", "gpus": 1}})
    assert again is got
    # ... but a bool is not the number it equals
    with pytest.raises(InvalidJob, match="job_retries=True"):
        opt.parse_options("j", {"job_retries": True})


@pytest.mark.parametrize("given, fragments", [
    ({"job_timeout": -1}, ["'j'", "job_timeout=-1", "seconds > 0"]),
    ({"job_timeout": 0}, ["job_timeout=0", "seconds > 0"]),
    ({"job_timeout": "600"}, ["job_timeout='600'", "seconds > 0"]),
    ({"job_timeout": math.inf}, ["job_timeout=inf"]),
    ({"job_retries": -1}, ["job_retries=-1", "whole number >= 0"]),
    ({"job_retries": 1.5}, ["job_retries=1.5", "whole number >= 0"]),
    ({"job_retries": True}, ["job_retries=True"]),
    ({"job_resources": {"gpus": -1}}, ["job_resources=", "'gpus'", ">= 0, not -1"]),
    ({"job_resources": {"mem": "lots"}}, ["'mem'", "8GB", "'lots'"]),
    ({"job_resources": {"a b": 1}}, ["resource name", "'a b'"]),
    ({"job_resources": {3: 1}}, ["resource name", "3"]),
    ({"job_resources": [("gpus", 1)]}, ["job_resources=", "dict of names to amounts"]),
    ({"job_timout": 5}, ["'j'", "unknown keyword job_timout", "job_timeout, job_retries, "
                                                                "job_resources"]),
])
def test_bad_options_name_the_job_and_the_culprit(given, fragments):
    with pytest.raises(InvalidJob) as info:
        opt.parse_options("j", given)
    assert info.value.job == "j"
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_split_options_leaves_the_functions_keywords():
    kwargs = {"a": 1, "job_timeout": 5, "jobs": 2}
    rest, mine = opt.split_options(kwargs)
    assert rest == {"a": 1, "jobs": 2} and mine == {"job_timeout": 5}
    plain = {"a": 1}
    assert opt.split_options(plain) == (plain, None)


def test_json_round_trip_and_nothing_stored_without_options():
    options = JobOptions(600.0, 2, {"gpus": 1, "mem": 8 * 10**9})
    text = opt.to_json(options)
    assert opt.from_json(text) == options
    assert opt.to_json(NO_OPTIONS) is None and opt.to_json(JobOptions()) is None
    assert opt.from_json(None) is NO_OPTIONS


def test_describe_says_what_is_set():
    assert opt.describe(NO_OPTIONS) == []
    assert opt.describe(JobOptions(600.0, 2, {"gpus": 1, "mem": 3 * 2**29})) == [
        ("timeout", "600 s"), ("retries", "2"), ("resources", "gpus=1, mem=1.5 GiB")]
    assert opt.format_amount("mem", 8 * 10**9) == "8 GB"
    assert opt.format_amount("mem", 123456789) == "123.5 MB"


# -- totals --------------------------------------------------------------------------------


def test_totals_parse_from_text_and_dicts():
    assert opt.totals_from_text("gpus=2,licence=3") == {"gpus": 2, "licence": 3}
    assert opt.totals_from_text("mem=16GB, cpus=0.5") == {"mem": 16 * 10**9, "cpus": 0.5}
    assert opt.totals_from_text(None) == {} and opt.totals_from_text("") == {}
    assert opt.parse_totals({"gpus": 2, "mem": "1GiB"}) == {"gpus": 2, "mem": 2**30}
    assert opt.parse_totals(None) == {}


@pytest.mark.parametrize("value, fragment", [
    ("licence=x", "'x'"), ("gpus", "NAME=AMOUNT"), ("=3", "NAME=AMOUNT"),
    ("gpus=-1", "'-1'"), ("mem=lots", "'lots'"), ("a b=1", "resource name"),
    ({"gpus": "2"}, "'2'"), (["gpus"], "dict"), ("gpus=2", "dict"), ({"gpus": True}, "True"),
])
def test_bad_totals_are_bad_usage(value, fragment):
    parse = opt.parse_totals if not isinstance(value, str) or fragment == "dict" \
        else opt.totals_from_text
    with pytest.raises(BadUsage) as info:
        parse(value)
    assert isinstance(info.value, ValueError)
    assert "resources" in str(info.value) and fragment in str(info.value)


def test_default_totals():
    totals = opt.default_totals(4, {"gpus": 1, "licence": 3}, memory=8 * 10**9, gpus=2)
    assert totals == {"cpus": 4, "mem": 8 * 10**9, "gpus": 1, "licence": 3}
    assert totals["anything-else"] == 1 and "anything-else" not in totals
    assert opt.default_totals(2, {}, memory=10, gpus=0) == {"cpus": 2, "mem": 10, "gpus": 0}


@pytest.mark.parametrize("value, n", [("0,1", 2), ("", 0), ("3", 1), ("-1", 0), ("0,-1,2", 1),
                                      ("GPU-5a2f,GPU-77b1", 2)])
def test_cuda_visible_devices(value, n, monkeypatch):
    assert machine.cuda_devices(value) == n
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert machine.visible_gpus() == n


def test_machine_memory_and_totals(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    memory = machine.memory_bytes()
    assert memory > 10**8
    assert machine.machine_totals(3, {"licence": 2}) == {"cpus": 3, "mem": memory, "gpus": 1,
                                                         "licence": 2}


# -- the API ------------------------------------------------------------------------------


def test_job_keywords_never_reach_the_function(ctx):
    p = ctx.comp(takes_anything, 1, job_timeout=5, job_retries=2,
                 job_resources={"mem": "1GB"}, k="v")
    d = ctx.comp_dynamic(child_maker, 2, job_id="maker", job_timeout=60)
    ctx.make()
    received = sorted(repr((c[1], c[3])) for c in CALLS if c[0] == "takes_anything")
    assert received == ["(0, {'tag': 'c'})", "(1, {'k': 'v'})", "(1, {'tag': 'c'})"]
    assert p.result() == 1 and d.result() == [0, 1]
    # the children a dynamic job defined keep their options too
    assert ctx.definition("child-0").options == JobOptions(None, 1, {"licence": 1})
    assert ctx.definition("maker").options == JobOptions(60.0)


def test_the_module_level_comp_takes_options(ctx):
    from nbmake_ext import comp
    from nbmake_ext.context import set_current_context

    set_current_context(ctx)
    try:
        p = comp(takes_anything, 2, job_id="mod", job_retries=3)
    finally:
        set_current_context(None)
    assert ctx.definition(p.job_id).options == JobOptions(None, 3)
    ctx.make()
    assert CALLS == [("takes_anything", 2, (), {})]


def test_options_are_not_part_of_the_signature_nor_of_the_default_id(ctx, store_path):
    plain = ctx.comp(takes_anything, 7)
    spec = ctx.definition(plain.job_id)
    ctx.make()
    assert len(CALLS) == 1
    with_options = ctx.comp(takes_anything, 7, job_timeout=30, job_resources={"gpus": 1})
    assert with_options.job_id == plain.job_id  # the same job
    new = ctx.definition(plain.job_id)
    assert new.def_fp == spec.def_fp and new.options == JobOptions(30.0, 0, {"gpus": 1})
    ctx.make()
    assert len(CALLS) == 1 and ctx.lines[-1].startswith("make: 0 done, 1 up to date")
    assert ctx.why(plain.job_id) == []
    # again, other options: recorded, still nothing runs
    ctx.comp(takes_anything, 7, job_timeout=90, job_retries=1)
    ctx.make()
    assert len(CALLS) == 1
    assert ctx.definition(plain.job_id).options == JobOptions(90.0, 1)
    assert ctx.details(plain.job_id).options == {"timeout": 90.0, "retries": 1}
    ctx.close()
    fresh = new_context(store_path)
    try:
        assert fresh.definition(plain.job_id).options == JobOptions(90.0, 1)
        assert Promise(plain.job_id, fresh).state == "done"
        fresh.make()
        assert len(CALLS) == 1
        # and registered again without options: none is left
        fresh.comp(takes_anything, 7)
        fresh.make()
        assert len(CALLS) == 1
    finally:
        fresh.close()
    again = new_context(store_path)
    try:
        assert again.definition(plain.job_id).options is NO_OPTIONS
        assert again.details(plain.job_id).options == {}
    finally:
        again.close()


def test_a_job_without_options_stores_none(ctx):
    ctx.comp(takes_anything, 1, job_id="plain")
    ctx.comp(takes_anything, 2, job_id="opts", job_retries=2)
    ctx.sync()
    rows = dict(ctx.store._conn.execute("SELECT job_id, options FROM jobs"))
    assert rows == {"plain": None, "opts": '{"retries": 2}'}
    assert ctx.definition("plain").options is NO_OPTIONS


def test_details_shows_the_options_in_a_fresh_console(ctx, store_path, tmp_path):
    ctx.comp(takes_anything, 1, job_id="fit", job_timeout=600, job_retries=2,
             job_resources={"mem": "8GB", "gpus": 1, "licence": 1})
    ctx.comp(takes_anything, 2, job_id="plain")
    ctx.make()
    ctx.close()

    def details(job):
        done = subprocess.run([sys.executable, "-m", "nbmake_ext", "--store", str(store_path),
                               "details", job], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = details("fit")
    assert "\ntimeout    600 s\n" in out
    assert "\nretries    2\n" in out
    assert "\nresources  gpus=1, licence=1, mem=8 GB\n" in out
    plain = details("plain")
    assert "timeout" not in plain and "retries" not in plain and "resources" not in plain


def test_details_html_shows_the_options(ctx):
    from nbmake_ext.ui import views

    ctx.comp(takes_anything, 1, job_id="fit", job_timeout=5)
    html = views.details_view(ctx.details("fit")).html
    assert "<b>timeout</b>" in html and "5 s" in html


# -- parmake totals -------------------------------------------------------------------------


@pytest.fixture
def driver_totals(monkeypatch):
    """The resource totals each Driver a context starts is given."""
    import nbmake_ext.context as context_module

    seen = []
    real = context_module.Driver

    class Recording(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.resource_totals)

    monkeypatch.setattr(context_module, "Driver", Recording)
    return seen


def test_parmake_totals_reach_the_driver(ctx, driver_totals, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    ctx.comp(abs, -1, job_id="a", job_resources={"licence": 1})  # engines import abs
    ctx.parmake(n=1, resources={"gpus": 2, "licence": 3})
    ctx.comp(abs, -2, job_id="b")  # (a make with nothing to do builds no driver)
    ctx.make()
    ctx.comp(abs, -3, job_id="c")
    ctx.parmake(n=2)
    memory = machine.memory_bytes()
    assert driver_totals == [{"cpus": 1, "mem": memory, "gpus": 2, "licence": 3}, None,
                             {"cpus": 2, "mem": memory, "gpus": 3}]
    assert driver_totals[2]["licence"] == 1
    assert ctx.resource_totals == driver_totals[2]
    # A parmake told by the record of the last clean make that nothing changed: its
    # totals are the latest all the same.
    ctx.parmake(n=1, resources={"licence": 5})
    assert len(driver_totals) == 3 and ctx.resource_totals["licence"] == 5


def test_parmake_resources_from_the_command_line(ctx, driver_totals):
    from nbmake_ext.cli import build_parser
    from nbmake_ext.commands import COMMANDS

    ctx.comp(abs, -1, job_id="a")
    ns = build_parser().parse_args(["parmake", "--resources", "licence=3,mem=1GB", "1", "a"])
    COMMANDS["parmake"].run(ctx, ns)
    assert driver_totals[0]["licence"] == 3 and driver_totals[0]["mem"] == 10**9
    assert driver_totals[0]["cpus"] == 1


def test_parmake_with_bad_totals_runs_nothing(ctx, driver_totals):
    ctx.comp(takes_anything, 1, job_id="a")
    with pytest.raises(BadUsage, match="'x'"):
        ctx.parmake(n=1, resources={"licence": "x"})
    assert driver_totals == [] and ctx._pool is None and CALLS == []


def test_a_fresh_context_reads_options_of_a_store_it_did_not_define(store_path):
    with Context(store_path) as ctx:
        ctx.comp(takes_anything, 1, job_id="a", job_timeout=3)
    with Context(store_path) as ctx:
        assert ctx.definition("a").options == JobOptions(3.0)
