"""The garbage collector's pauses around a command's bookkeeping (shared/gc_pause.py)."""

import gc
import weakref

from nbmake_ext.shared.gc_pause import (BOOKKEEPING_THRESHOLD, fewer_collections, gc_paused,
                                        objects_frozen)


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


def test_what_a_pause_builds_inside_a_freeze_joins_it_until_the_freeze_ends():
    outside = cycle()
    with objects_frozen():
        frozen = gc.get_freeze_count()
        with gc_paused():
            kept = [Node() for _ in range(1000)]
            dropped = cycle()  # garbage by the pause's end: frozen with the rest
        assert gc.get_freeze_count() >= frozen + 1000
        made_after = cycle()
        gc.collect()
        assert made_after() is None, "garbage made after the pause is still collected"
        assert dropped() is not None
        with objects_frozen():  # nested: the outer one undoes the freeze
            assert gc.get_freeze_count() >= frozen + 1000
        assert gc.get_freeze_count() >= frozen + 1000
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert dropped() is None and outside() is None
    assert len(kept) == 1000


def test_a_pause_outside_any_freeze_freezes_nothing():
    with gc_paused():
        kept = [Node() for _ in range(100)]
    assert gc.get_freeze_count() == 0 and len(kept) == 100


def test_fewer_young_collections_inside_and_the_threshold_back_after():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (BOOKKEEPING_THRESHOLD, *before[1:])
        made_inside = cycle()
        gc.collect()
        assert made_inside() is None, "garbage is still collected"
    assert gc.get_threshold() == before
    with fewer_collections(on=False):  # a run whose jobs run here
        assert gc.get_threshold() == before


def test_a_threshold_the_user_chose_is_left_as_it_is():
    before = gc.get_threshold()
    try:
        for chosen in (0, BOOKKEEPING_THRESHOLD * 2):
            gc.set_threshold(chosen, *before[1:])
            with fewer_collections():
                assert gc.get_threshold()[0] == chosen
            assert gc.get_threshold()[0] == chosen
    finally:
        gc.set_threshold(*before)


def test_what_the_loop_built_inside_a_freeze_joins_it_so_no_collection_falls_after():
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    with objects_frozen():
        try:
            with fewer_collections():
                kept = [[i] for i in range(5000)]  # 5,000 young objects: over the usual 700
                gc.callbacks.append(count)
            more = [[i] for i in range(100)]
        finally:
            gc.callbacks.remove(count)
        assert collections == [], "the collection put off fell on the end of the command"
        assert gc.get_freeze_count() >= 5000
    assert gc.get_freeze_count() == 0 and len(kept) == 5000 and len(more) == 100
