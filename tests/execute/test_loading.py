"""Loading a job's arguments where it runs: an argument that cannot be loaded is named."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs.jobs import LoadsNowhere  # noqa: E402

from nbmake_ext.shared.loading import ArgumentsUnloadable, load_arguments  # noqa: E402


class NoState:
    def __init__(self):
        self.x = 1

    def __setstate__(self, state):
        raise RuntimeError("no state for me")


def _message(args, kwargs, tamper=None) -> str:
    data = pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    if tamper:
        data = data.replace(*tamper)
    with pytest.raises(ArgumentsUnloadable) as info:
        load_arguments(data, "engine 7")
    return info.value.message


def test_arguments_that_load_are_returned():
    data = pickle.dumps(((1, [2]), {"k": {"a": 3}}))
    assert load_arguments(data, "engine 7") == ((1, [2]), {"k": {"a": 3}})


@pytest.mark.parametrize("args, kwargs, culprit", [
    ((1, LoadsNowhere()), {}, "argument args[1]"),
    ((1, 2, 3, 4, [5, {"a": LoadsNowhere()}]), {"k": 1}, "argument args[4][1]['a']"),
    ((), {"cfg": {"m": LoadsNowhere()}}, "argument kwargs['cfg']['m']"),
    ((), {"s": NoState()}, "argument kwargs['s']"),
])
def test_the_argument_that_cannot_be_loaded_is_named(args, kwargs, culprit):
    message = _message(args, kwargs)
    assert message.startswith(f"its {culprit} cannot be loaded on engine 7: "), message


def test_several_culprits_and_a_missing_module():
    message = _message((LoadsNowhere(), 1, LoadsNowhere()), {})
    assert message == ("its arguments args[0], args[2] cannot be loaded on engine 7: "
                       "ValueError: this object refuses to be loaded")
    message = _message((1, NoState()), {}, tamper=(b"test_loading", b"test_lodaing"))
    assert message == ("its argument args[1] cannot be loaded on engine 7: "
                       "ModuleNotFoundError: No module named 'test_lodaing'")
