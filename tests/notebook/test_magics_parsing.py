"""Parsing and help of the magics, in IPython's in-process test shell (no kernel: fast).

What the magics do is tested in real kernels (test_kernel.py); here only how they read
their arguments and what ``%make?`` says.
"""

from __future__ import annotations

import os

import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

from nbmake_ext import current_context
from nbmake_ext.commands import COMMANDS
from nbmake_ext.ipython import extension
from nbmake_ext.core.options import NO_OPTIONS, JobOptions
from nbmake_ext.ipython.magics import NbmakeMagics, comp_flags, parse

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ip(tmp_path_factory):
    shell = start_ipython()
    here = tmp_path_factory.mktemp("parsing")
    cwd = os.getcwd()
    os.chdir(here)  # the extension opens the default store, .nbmake in the working directory
    try:
        shell.run_line_magic("load_ext", "nbmake_ext")
        shell.run_line_magic("nbmake", f"store {here / 'store'}")
        yield shell
        shell.run_line_magic("unload_ext", "nbmake_ext")
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("magic, line, expected", [
    ("make", "", {"targets": [], "echo": False}),
    ("make", "--echo report 'fit-*' failed", {"targets": ["report", "fit-*", "failed"],
                                              "echo": True}),
    ("remake", "draw-1 draw-2", {"targets": ["draw-1", "draw-2"], "echo": False}),
    ("clean", "failed", {"targets": ["failed"]}),
    ("clean", '"two words" x', {"targets": ["two words", "x"]}),
])
def test_own_magics_parse_targets(ip, magic, line, expected):
    assert vars(parse(ip.find_line_magic(magic), line)) == expected


@pytest.mark.parametrize("line, message", [
    ("remake", "required: targets"),
    ("make --bogus", "unrecognized arguments: --bogus"),
    ("nbmake details", "required: job"),
    ("nbmake why a b", "unrecognized arguments: b"),
    ("nbmake frobnicate", "unknown nbmake command 'frobnicate'"),
    ("nbmake debug", "usage: %nbmake debug JOB"),
    ("nbmake store a b", r"usage: %nbmake store \[PATH\]"),
    ("make 'unclosed", "No closing quotation"),
])
def test_bad_usage_is_a_usage_error(ip, line, message):
    name, _, rest = line.partition(" ")
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic(name, rest)


@pytest.mark.parametrize("line, bad", [
    ("0", "'0'"), ("-3", "'-3'"), ("n=0", "'0'"), ("n=-3", "'-3'"), ("n=abc", "'abc'"),
    ("1.5", "'1.5'"), ("n=-3 'fit-*'", "'-3'"), ("-n 0", "0"),
])
def test_parmake_n_must_be_a_whole_number_from_1(ip, line, bad):
    ctx = current_context()
    ctx.comp(abs, -1, job_id="parmake-victim")
    with pytest.raises(UsageError, match="whole number >= 1") as info:
        ip.run_line_magic("parmake", line)
    assert bad in str(info.value)
    assert ctx._pool is None and ctx.state_of("parmake-victim") == "todo"  # nothing ran


@pytest.mark.parametrize("line, n, targets", [
    ("", None, []), ("8", 8, []), ("n=4 'fit-*'", 4, ["fit-*"]), ("-n 2 report", 2, ["report"]),
    ("3 report 5", 3, ["report", "5"]),
])
def test_parmake_reads_n_and_targets(ip, line, n, targets):
    from nbmake_ext.commands import parmake_words

    assert parmake_words(parse(ip.find_line_magic("parmake"), line)) == (n, targets)


def test_comp_takes_one_job_id(ip):
    with pytest.raises(UsageError, match="one word"):
        ip.run_cell_magic("comp", "two words", "x = 1")


@pytest.mark.parametrize("line, job_id, options", [
    ("", None, JobOptions()),
    ("fit", "fit", JobOptions()),
    ("fit --timeout 600 --retries 2 --mem 8GB --gpus 1 --cpus 2 --resource licence=1",
     "fit", JobOptions(600.0, 2, {"cpus": 2, "gpus": 1, "licence": 1, "mem": 8 * 10**9})),
    ("--timeout 0.5 x", "x", JobOptions(0.5)),
    ("--mem 1.5GiB --resource a=1 --resource b=0.5", None,
     JobOptions(None, 0, {"a": 1, "b": 0.5, "mem": 3 * 2**29})),
    ("--retries 0 --timeout 5", None, JobOptions(5.0)),
])
def test_comp_flags_are_the_jobs_options(ip, line, job_id, options):
    got = comp_flags(ip.find_cell_magic("comp"), line)
    assert got == (job_id, options)
    if not options:
        assert got[1] is NO_OPTIONS


@pytest.mark.parametrize("line, fragments", [
    ("--timeout -1", ["--timeout", "seconds > 0", "'-1'"]),
    ("--timeout abc", ["--timeout", "'abc'"]),
    ("--timeout", ["--timeout", "expected one argument"]),
    ("--retries 1.5", ["--retries", "whole number >= 0", "'1.5'"]),
    ("--retries -2", ["--retries", "'-2'"]),
    ("--mem lots", ["--mem", "8GB", "'lots'"]),
    ("--gpus x", ["--gpus", "'x'"]),
    ("--cpus -1", ["--cpus", "'-1'"]),
    ("--resource licence", ["--resource", "NAME=AMOUNT", "'licence'"]),
    ("--resource licence=x", ["--resource", "licence", "'x'"]),
    ("--resource mem=1GB --mem 2GB", ["'mem'", "twice"]),
    ("fit --bogus 3", ["unrecognized arguments: --bogus"]),
    ("fit 'unclosed", ["No closing quotation"]),
])
def test_bad_comp_flags_are_usage_errors_naming_the_flag(ip, line, fragments):
    ctx = current_context()
    before = set(ctx.graph.specs)
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("comp", line, "flagged = 1")
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert set(ctx.graph.specs) == before  # nothing was defined


def test_comp_flags_reach_the_job(ip):
    ip.run_cell_magic("comp", "flagged-job --timeout 5 --retries 1 --mem 1GB", "flagged = 2")
    ctx = current_context()
    assert ctx.definition("flagged-job").options == JobOptions(5.0, 1, {"mem": 10**9})
    ip.run_cell_magic("comp", "flagged-job", "flagged = 2")  # the same job, no options now
    assert ctx.definition("flagged-job").options is NO_OPTIONS


@pytest.mark.parametrize("line, resources", [
    ("2 --resources licence=3", {"licence": 3}),
    ("--resources gpus=2,licence=3,mem=64GB 8 fit", {"gpus": 2, "licence": 3, "mem": 64 * 10**9}),
    ("8", {}),
])
def test_parmake_reads_resource_totals(ip, line, resources):
    from nbmake_ext.commands import parmake_resources

    assert parmake_resources(parse(ip.find_line_magic("parmake"), line)) == resources


@pytest.mark.parametrize("line, bad", [
    ("2 --resources licence=x", "'x'"), ("2 --resources gpus", "NAME=AMOUNT"),
    ("--resources gpus=-1 2", "'-1'"), ("2 --resources", "expected one argument"),
])
def test_parmake_bad_resources_are_a_usage_error(ip, line, bad):
    ctx = current_context()
    ctx.comp(abs, -1, job_id="parmake-victim")
    with pytest.raises(UsageError, match="resources") as info:
        ip.run_line_magic("parmake", line)
    assert bad in str(info.value)
    assert ctx._pool is None and ctx.state_of("parmake-victim") == "todo"  # nothing ran


@pytest.mark.parametrize("name", ["make", "parmake"])
def test_help_of_make_and_parmake_tells_the_job_options(ip, name):
    doc = ip.find_line_magic(name).__doc__
    for word in ("job_timeout=SECONDS", "job_retries=N", "job_resources=", "--timeout 600",
                 "--retries 2", "--mem 8GB", "--resource licence=1", "1.5GiB",
                 "parmake --resources gpus=2,licence=3"):
        assert word in doc, word
    if name == "parmake":
        assert "--resources NAME=AMOUNT,..." in doc
        assert "cpus = the number of engines" in " ".join(doc.split())


def test_comp_help_lists_its_flags(ip):
    doc = ip.find_cell_magic("comp").__doc__
    assert "%%comp [--timeout SECONDS] [--retries N] [--mem SIZE]" in doc
    assert "--resource" in doc and "repeat for more" in doc


OWN_MAGICS = sorted(n for n, c in COMMANDS.items() if c.own_magic)


@pytest.mark.parametrize("name", OWN_MAGICS)
def test_help_of_own_magics_has_usage_and_example(ip, name):
    doc = ip.find_line_magic(name).__doc__
    assert f"\n  %{name} [" in doc and COMMANDS[name].help in doc
    assert "Example::" in doc and f"    %{name} " in doc


@pytest.mark.parametrize("name", ["make", "parmake", "clean"])
def test_help_says_what_targets_mean(ip, name):
    doc = " ".join(ip.find_line_magic(name).__doc__.split())
    assert "state words (todo stale running failed blocked done" in doc
    assert "all (every job in the store)" in doc
    assert "in a notebook the jobs its kernel defined and what they need" in doc
    if name == "make":
        assert "%make all" in doc
    if name == "parmake":
        assert "N a whole number >= 1" in doc


def test_nbmake_help_lists_every_command(ip):
    doc = ip.find_line_magic("nbmake").__doc__
    for name in [*COMMANDS, "debug", "store"]:
        assert f"%nbmake {name}" in doc
    assert "%nbmake details JOB" in doc and "%nbmake make [--echo] [TARGETS ...]" in doc


def test_comp_help_has_an_example(ip):
    doc = ip.find_cell_magic("comp").__doc__
    assert "%%comp fit" in doc and "outputs" in doc and "inputs" in doc


def test_only_the_commands_that_run_jobs_are_magics_of_their_own(ip):
    assert {"make", "remake", "clean"} <= set(OWN_MAGICS)
    ours = [name for name, fn in ip.magics_manager.magics["line"].items()
            if isinstance(getattr(fn, "__self__", None), NbmakeMagics)
            or fn.__module__.startswith("nbmake_ext")]
    assert sorted(ours) == sorted([*OWN_MAGICS, "nbmake"])  # `ls`, `debug` stay IPython's


def test_extension_context_is_the_current_one(ip):
    assert extension._session.ctx is current_context()


def test_a_magic_target_naming_a_declared_output_selects_its_job(ip, tmp_path):
    from nbmake_ext import sh

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        sh("echo a > {output}", outputs=["figs/a.png"], job_id="magic-draw-a")
        sh("echo b > {output}", outputs=["figs/b.png"], job_id="magic-draw-b")
        ip.run_line_magic("make", "figs/a.png")
        assert (tmp_path / "figs/a.png").exists() and not (tmp_path / "figs/b.png").exists()
        assert current_context().why("figs/b.png") == ["never ran"]
    finally:
        os.chdir(cwd)
