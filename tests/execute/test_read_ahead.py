"""engine/read_ahead.py: input files read ahead on threads, at most DEPTH at a time."""

import threading

import pytest

from nbmake_ext.engine.read_ahead import DEPTH, ReadAhead


class Reads:
    """A read that records what was asked and how many ran at once; ``hold`` keeps them
    running until released."""

    def __init__(self, fail: str = ""):
        self.asked: list[str] = []
        self.running = self.most = 0
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.hold.set()
        self.fail = fail

    def __call__(self, job_id: str, name: str, checksum: str) -> bytes:
        with self.lock:
            self.asked.append(job_id)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.hold.wait(10)
            if job_id == self.fail:
                raise OSError(f"cannot read {name}")
            return f"{job_id}:{name}:{checksum}".encode()
        finally:
            with self.lock:
                self.running -= 1


def files(n: int) -> list[tuple[str, str, str]]:
    return [(f"j{i}", f"f{i}", f"c{i}") for i in range(n)]


def test_each_file_is_read_once_in_order_and_never_more_than_depth_at_once():
    reads = Reads()
    reads.hold.clear()
    ahead = ReadAhead(reads)
    ahead.start(files(6))
    threading.Timer(0.2, reads.hold.set).start()
    got = [ahead.take(f"j{i}") for i in range(6)]
    assert got == [f"j{i}:f{i}:c{i}".encode() for i in range(6)]
    assert reads.asked == [f"j{i}" for i in range(6)]
    assert reads.most <= DEPTH


def test_a_file_asked_out_of_order_is_left_to_the_caller_and_not_read_again():
    reads = Reads()
    ahead = ReadAhead(reads)
    ahead.start(files(5))
    assert ahead.take("j4") is None  # not being read yet: the caller reads it
    assert [ahead.take(f"j{i}") for i in range(4)] == [f"j{i}:f{i}:c{i}".encode()
                                                       for i in range(4)]
    ahead.clear()
    assert "j4" not in reads.asked


def test_a_failed_read_raises_where_its_file_is_taken():
    ahead = ReadAhead(Reads(fail="j1"))
    ahead.start(files(3))
    assert ahead.take("j0") == b"j0:f0:c0"
    with pytest.raises(OSError, match="cannot read f1"):
        ahead.take("j1")
    assert ahead.take("j2") == b"j2:f2:c2"


def test_one_file_is_not_read_ahead():
    reads = Reads()
    ahead = ReadAhead(reads)
    ahead.start(files(1))
    assert ahead.take("j0") is None and reads.asked == []
