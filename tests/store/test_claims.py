"""Claims in memory, for a run alone on its store (store/claims.py, the gate): no lock per
job, and any other store that opens meanwhile sees them as locks before it claims or
looks. Real stores on a real directory, in this process and in others; the locks are read
with a file of their own (another open file description), as another process sees them."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import threading

import pytest

from nbmake_ext.store import Store
from nbmake_ext.store import claims

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "F_OFD_SETLK"),
                                reason="claims in memory need open-file-description locks")


def locked(path, job_id: str) -> bool:
    """Whether some open file holds the claim of ``job_id`` (as any other store sees it)."""
    shard, offset = claims._place(job_id)
    fd = os.open(path / "claims" / f"{shard:02d}", os.O_RDWR)
    try:
        arg = struct.pack(claims._FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        found = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, arg)
        return struct.unpack(claims._FLOCK, found)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def test_a_run_alone_claims_in_memory_until_another_store_opens(tmp_path):
    path = tmp_path / "s"
    one = Store(path)
    assert one.run_alone()
    assert one.claim(["a", "b"]) == (["a", "b"], {})
    assert not locked(path, "a") and not locked(path, "b")  # no system call per job
    two = Store(path)
    # It waits for the run to lock what it holds, then claims as ever.
    assert two.claim(["a", "b", "c"]) == (["c"], {"a": "another process", "b": "another process"})
    assert locked(path, "a") and locked(path, "b")
    assert one.claim(["d"]) == (["d"], {}) and locked(path, "d")  # with locks from now on
    one.release(["a"])
    assert not locked(path, "a")
    assert two.claim(["a"]) == (["a"], {})
    one.run_over()
    one.close()
    two.close()


def watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nbmake-claims"]


def test_one_watcher_serves_every_run_alone_and_still_sees_a_store_that_opens(tmp_path):
    path = tmp_path / "s"
    before = set(watchers())
    one = Store(path)
    seen = []
    for job in ("a", "b", "c"):  # runs one after another, as makes are
        assert one.run_alone()
        one.claim([job])
        seen.append(set(watchers()) - before)
        one.release([job])
        one.run_over()
    assert len(seen[0]) == 1 and seen[0] == seen[1] == seen[2]  # not a thread per run
    assert one.run_alone()
    one.claim(["d"])
    two = Store(path)  # the fourth run still hears of it: "d" is locked for it
    assert two.claim(["d", "e"]) == (["e"], {"d": "another process"})
    assert locked(path, "d")
    one.run_over()
    two.close()
    one.close()
    assert not (set(watchers()) - before)  # gone with its store


def test_a_store_that_opens_during_a_run_alone_sees_what_it_runs(tmp_path):
    path = tmp_path / "s"
    one = Store(path)
    assert one.run_alone()
    one.claim(["a"])
    two = Store(path)
    assert two.running_among(["a", "b"]) == {"a"}
    assert two.claimed_elsewhere(["a", "b"]) == {"a"}
    one.run_over()
    one.close()
    two.close()


def test_a_run_with_another_store_open_claims_with_locks(tmp_path):
    path = tmp_path / "s"
    one, two = Store(path), Store(path)
    assert not one.run_alone()
    assert one.claim(["a"]) == (["a"], {})
    assert locked(path, "a")
    assert two.claim(["a"]) == ([], {"a": "another process"})
    one.run_over()
    two.close()
    # Alone again: the next run claims in memory.
    one.release(["a"])
    assert one.run_alone()
    one.claim(["b"])
    assert not locked(path, "b")
    one.run_over()
    one.close()


def test_a_store_that_claims_keeps_another_from_claiming_in_memory(tmp_path):
    """It opened after the other looked for stores, and claimed before the other took the
    gate: the other's run must claim with locks."""
    path = tmp_path / "s"
    one, two = Store(path), Store(path)
    assert two.claim(["a"]) == (["a"], {})  # holds the gate, shared
    # As if ``one`` had seen no other store open: the gate alone keeps it from claims in
    # memory.
    real = one._claims._held_elsewhere
    one._claims._held_elsewhere = lambda fd, offset: False if offset == claims._PRESENCE \
        else real(fd, offset)
    try:
        assert not one.run_alone()
    finally:
        one._claims._held_elsewhere = real
    assert one.claim(["a"]) == ([], {"a": "another process"})
    assert two._claims.held
    one.close()
    two.close()


def test_the_gate_is_let_go_when_the_run_is_over(tmp_path):
    path = tmp_path / "s"
    one = Store(path)
    assert one.run_alone()
    one.claim(["a"])
    one.release(["a"])
    one.run_over()
    two = Store(path)
    assert two._claims.settled()  # no wait: nothing is held in memory
    assert two.claim(["a"]) == (["a"], {})
    assert not one.run_alone()  # another store is open
    one.close()
    two.close()


def test_another_process_waits_for_the_claims_of_a_run_alone(tmp_path):
    path = tmp_path / "s"
    one = Store(path)
    assert one.run_alone()
    one.claim(["a"])
    code = ("import sys; from nbmake_ext.store import Store;"
            "s = Store(sys.argv[1]); print(s.claim(['a', 'b'])); s.close()")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str((["b"], {"a": "another process"}))
    assert locked(path, "a")
    one.run_over()
    one.close()


@pytest.mark.parametrize("attempt", range(3))
def test_claims_released_while_they_go_back_to_locks_leave_no_lock_behind(tmp_path, attempt):
    """The store's writer releases claims while the run's watcher turns them into locks:
    each claim ends either released or locked, then released; never locked and forgotten."""
    path = tmp_path / "s"
    one = Store(path)
    ids = [f"j{i}" for i in range(3000)]
    assert one.run_alone()
    assert one.claim(ids)[0] == ids
    releasing = threading.Thread(target=one.release, args=(ids,))
    releasing.start()
    one._claims._to_locks()  # what the watcher does once another store opens
    releasing.join()
    one.run_over()
    assert one._claims.held == {}
    two = Store(path)
    assert two.claim(ids) == (ids, {})
    one.close()
    two.close()
