"""The garbage collector's pauses around a command's bookkeeping (shared/gc_pause.py)."""

import gc
import weakref

from nbmake_ext.shared.gc_pause import gc_paused, objects_frozen


class Node:
    pass


def cycle() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_paused_inside_and_back_on_after():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_user_stays_off():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_objects_alive_before_are_frozen_inside_and_collected_again_after():
    gc.collect()  # (counts start afresh: no collection comes before the freeze)
    before = cycle()  # garbage already, not collected yet
    with objects_frozen():
        assert gc.get_freeze_count() > 0
        made_inside = cycle()
        gc.collect()
        assert made_inside() is None, "garbage made inside is still collected"
        assert before() is not None, "what was alive before is left alone inside"
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert before() is None


def test_someone_elses_freeze_is_left_as_it_is():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with objects_frozen():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
