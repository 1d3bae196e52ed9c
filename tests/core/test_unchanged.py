"""The digest of a set of definitions that a clean make records (core/unchanged.py): equal
for definitions the store keeps alike, different for anything it keeps otherwise, and none
for sets with jobs that depend on more than the store."""

import dataclasses

import pytest

from nbmake_ext.core.options import JobOptions
from nbmake_ext.core.unchanged import definitions_digest

from sim import spec


def digest(*specs):
    by_id = {s.job_id: s for s in specs}
    return definitions_digest(list(by_id), by_id)


def test_equal_definitions_have_equal_digests():
    one = digest(spec("a"), spec("b", ["a"]))
    assert one is not None and len(one) == 32
    assert digest(spec("a"), spec("b", ["a"])) == one


@pytest.mark.parametrize("change", [
    lambda a, b: (dataclasses.replace(a, code_fp="other"), b),
    lambda a, b: (dataclasses.replace(a, args_fp="other"), b),
    lambda a, b: (a, dataclasses.replace(b, deps=())),
    lambda a, b: (dataclasses.replace(a, options=JobOptions(30.0)), b),
    lambda a, b: (dataclasses.replace(a, job_id="c"), b),
    lambda a, b: (b, a),  # another order of registration
    lambda a, b: (a,),    # a job fewer
])
def test_any_change_of_what_the_store_keeps_changes_the_digest(change):
    a, b = spec("a"), spec("b", ["a"])
    assert digest(*change(a, b)) != digest(a, b)


def test_what_is_not_kept_does_not_count():
    a = spec("a")
    renamed = dataclasses.replace(a, function="m.renamed", code_parts={"x": "y"})
    assert digest(renamed) == digest(a)


@pytest.mark.parametrize("special", [
    spec("a", dynamic=True),
    spec("a", parent="p"),
    dataclasses.replace(spec("a"), inputs=("/data.txt",)),
    dataclasses.replace(spec("a"), options=JobOptions(outputs=("/out.txt",))),
])
def test_jobs_that_depend_on_more_than_the_store_have_no_digest(special):
    assert digest(spec("z"), special) is None
