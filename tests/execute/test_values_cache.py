"""ByteLRU: the one byte-budget cache of the run loop, engines, Dask workers and the Dask
runner."""

from __future__ import annotations

import threading

from nbmake_ext.shared.values_cache import ByteLRU


def test_keeps_values_within_the_budget_least_recently_used_out_first():
    c = ByteLRU(100, largest=100)
    c.put("a", "A", 40)
    c.put("b", "B", 40)
    assert c.get("a") == (True, "A")  # a use: "b" is now the least recently used
    c.put("c", "C", 40)
    assert c.get("b") == (False, None)
    assert c.get("a") == (True, "A") and c.get("c") == (True, "C")
    assert c.size == 80 and len(c) == 2


def test_a_value_larger_than_largest_is_not_kept_nor_the_older_one_under_its_key():
    c = ByteLRU(100)  # largest: a quarter of the budget
    assert c.largest == 25
    c.put("a", "small", 10)
    c.put("a", "large", 26)
    assert c.get("a") == (False, None)
    assert c.size == 0


def test_put_replaces_drop_and_clear_free_their_bytes():
    c = ByteLRU(100, largest=100)
    c.put("a", 1, 30)
    c.put("a", 2, 50)
    assert c.get("a") == (True, 2) and c.size == 50
    c.put(("b", "sum"), None, 10)  # None is a value like any other
    assert c.get(("b", "sum")) == (True, None)
    c.drop("a")
    c.drop("missing")
    assert c.size == 10 and "a" not in c
    c.clear()
    assert c.size == 0 and len(c) == 0


def test_a_threadsafe_cache_stays_consistent_under_threads():
    c = ByteLRU(1000, threadsafe=True)

    def work(t):
        for i in range(2000):
            c.put((t, i % 50), i, 7)
            c.get((t, (i * 7) % 50))
            if i % 13 == 0:
                c.drop((t, i % 50))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.size == 7 * len(c) <= 1000
