"""The share-out of resources among running jobs (core/resources.py), without processes."""

from nbmake_ext.core.resources import Holdings


def test_jobs_start_only_while_what_they_hold_fits_in_the_totals():
    h = Holdings({"cpus": 2, "mem": 8e9, "licence": 1})
    assert h.fits({"cpus": 1, "mem": 6e9})
    h.take("a", {"cpus": 1, "mem": 6e9})
    assert not h.fits({"mem": 3e9}) and h.fits({"mem": 2e9, "cpus": 1})
    h.take("b", {"licence": 1})
    assert not h.fits({"licence": 1})
    assert h.give_back("b") and h.fits({"licence": 1})
    assert not h.give_back("b")  # twice: nothing more to give back
    assert h.fits({"cpus": 0.5}) and h.fits({})


def test_a_name_without_a_total_has_one_and_fractions_add_up():
    h = Holdings({})
    assert h.over_total({"tokens": 1}) is None
    assert h.over_total({"tokens": 1.5}) == (
        "it asks for tokens=1.5, more than the total of 1 this make shares out")
    for job in "abc":
        h.take(job, {"tokens": 0.1 * (1 + (job == "c"))})  # 0.1 + 0.1 + 0.2 ...
    assert h.fits({"tokens": 0.6})  # ... leaves 0.6, though floats say 0.6000000000000001
    assert not h.fits({"tokens": 0.61})


def test_gpus_are_whole_devices_each_held_by_one_job():
    h = Holdings({"gpus": 3}, ["2", "5", "6", "9"])  # one more device than the total
    assert h.take("a", {"gpus": 1}) == ["2"]
    assert h.take("b", {"gpus": 1.5}) == ["5", "6"]  # rounded up
    assert not h.fits({"gpus": 0.5})  # no device left, though 0.5 of the amount is
    h.give_back("a")
    assert h.take("c", {"gpus": 0.5}) == ["2"]
    h.give_back("b")
    assert h.free_devices == ["5", "6"]
    assert Holdings({"gpus": 2}).take("x", {"gpus": 2}) == ["0", "1"]
