"""Only the owner can reach the engines (SPEC 7): owner-only ipc endpoints, every message
signed with a per-session key, and unsigned, wrongly signed or replayed messages dropped
before anything in them is unpickled.

Forged messages carry a pickle whose loading creates a marker file (its ``__reduce__``
calls ``open(marker, "w")``): the marker must never appear. A control checks that the same
pickle does create a marker when loaded, so the test would see it.

Engines cannot be attacked directly: they listen on nothing (each connects out to the
kernel's ROUTER; ``test_engines_listen_on_nothing`` checks their sockets), so a forged
message can only reach an engine through the kernel's socket. The engine's own check is
tested by starting a real engine against a ROUTER the test controls.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import pytest
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import ENGINE_MODULE, PYTHON, guarded  # noqa: E402

from nbmake_ext.shared.outcomes import DONE_JOB  # noqa: E402
from nbmake_ext.shared import wire  # noqa: E402
from nbmake_ext.shared.wire import KEY_BYTES, Signer, Verifier  # noqa: E402


class Evil:
    """Unpickling this creates the file ``path``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil(path) -> bytes:
    return pickle.dumps(Evil(str(path)))


@pytest.fixture
def marker(tmp_path) -> Path:
    control = tmp_path / "control-marker"
    pickle.loads(evil(control)).close()
    assert control.exists(), "the evil pickle does not work: the test would prove nothing"
    return tmp_path / "marker"


def _pool(make_ctx, lab, n: int = 2):
    ctx = make_ctx()
    ctx.comp(J.work, lab, "first", job_id="first")
    guarded(ctx.parmake, n=n)
    return ctx, ctx._pool


# -- the endpoint ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_endpoint_is_an_owner_only_ipc_path(make_ctx, lab):
    ctx, pool = _pool(make_ctx, lab)
    assert pool.endpoint.startswith("ipc://")
    path = pool.endpoint[len("ipc://"):]
    assert len(path.encode()) < 107, path
    assert pool.socket.getsockopt(zmq.LAST_ENDPOINT).decode() == pool.endpoint
    d = os.stat(os.path.dirname(path))
    assert stat.S_IMODE(d.st_mode) == 0o700 and d.st_uid == os.getuid()
    s = os.stat(path)
    assert stat.S_ISSOCK(s.st_mode)
    assert stat.S_IMODE(s.st_mode) == 0o600 and s.st_uid == os.getuid()


@pytest.mark.timeout(60)
def test_the_session_key_is_secret_and_per_pool(make_ctx, lab):
    ctx, pool = _pool(make_ctx, lab)
    key = pool._key_hex
    assert len(bytes.fromhex(key)) == KEY_BYTES
    for pid in pool.pids():
        assert key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert key.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    other = make_ctx("store2")
    other.comp(J.work, lab, "other", job_id="other")
    guarded(other.parmake, n=1)
    assert other._pool._key_hex != key
    assert other._pool.endpoint != pool.endpoint


@pytest.mark.timeout(60)
@pytest.mark.skipif(os.getuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="needs root (to become another user) and /usr/bin/python3")
def test_another_user_cannot_connect(make_ctx, lab):
    ctx, pool = _pool(make_ctx, lab)
    path = pool.endpoint[len("ipc://"):]
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            f"    s.connect({path!r})\n"
            "except PermissionError:\n"
            "    sys.exit(7)\n"
            "sys.exit(0)\n")
    r = subprocess.run(["/usr/bin/python3", "-c", code], user=65534, group=65534,
                       extra_groups=[], capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 7, (r.returncode, r.stderr)
    # The owner can (the same check as root, as a control).
    r = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, timeout=30)
    assert r.returncode == 0


def _listening_sockets(pid: int) -> list[str]:
    """Sockets of the process that listen (unix stream with __SO_ACCEPTCON, tcp LISTEN)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[6] in inodes and int(cols[3], 16) & 0x10000:
            found.append("unix " + (cols[7] if len(cols) > 7 else "?"))
    for table in ("tcp", "tcp6"):
        f = Path(f"/proc/net/{table}")
        if f.exists():
            for line in f.read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] in inodes and cols[3] == "0A":
                    found.append(f"{table} {cols[1]}")
    return found


@pytest.mark.timeout(60)
def test_engines_listen_on_nothing(make_ctx, lab):
    ctx, pool = _pool(make_ctx, lab)
    for pid in pool.pids():
        assert _listening_sockets(pid) == []
    # The kernel does listen: on the ipc path (a control for the check above).
    assert any(pool.endpoint[6:] in s for s in _listening_sockets(os.getpid()))


# -- forged messages to the kernel ----------------------------------------------------------

@pytest.mark.timeout(90)
def test_forged_messages_to_the_kernel_are_dropped_unread(make_ctx, lab, marker):
    """An attacker who can reach the endpoint connects a DEALER and sends messages whose
    pickles would create the marker: raw bytes, an unsigned message, one signed with a
    wrong key, and a validly signed one (as if the key had leaked) sent twice. None is
    unpickled; the pool counts the drops and goes on serving."""
    ctx, pool = _pool(make_ctx, lab)
    pids = sorted(pool.pids())
    before = pool.verifier.dropped
    meta = json.dumps({"job_id": "first", "timing": {}}).encode()
    wrong = Signer(os.urandom(KEY_BYTES))
    leaked = Signer(bytes.fromhex(pool._key_hex))
    valid = leaked.frames("child", meta, evil(marker), b"", b"")

    attacker = zmq.Context()
    try:
        dealer = attacker.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IDENTITY, b"e1-1")  # a guess at an engine's name
        dealer.connect(pool.endpoint)
        sent = [
            [evil(marker)],                                              # raw bytes
            [b"returned 1", meta, evil(marker), b"", b""],                # unsigned
            wrong.frames("returned", meta, evil(marker), b"", b""),      # wrong key
            [valid[0], valid[1] + evil(marker)],                          # spliced body
            valid,                                                       # unknown peer
            valid,                                                       # a replay
        ]
        for frames in sent:
            dealer.send_multipart(frames)
        # Run a make meanwhile: the driver reads whatever has arrived.
        ctx.comp(J.work, lab, "during", job_id="during")
        guarded(ctx.parmake, n=2)
        # Then read the rest (nothing else is sent to the kernel now): the replay is the
        # last message, so once its drop is counted all have been read.
        end = time.monotonic() + 30
        while pool.verifier.dropped < before + 5:
            assert time.monotonic() < end, f"drops: {pool.verifier.dropped - before}"
            assert pool.poll(0.05) == [], "a forged message became an outcome"
        dealer.close(0)
    finally:
        attacker.term()

    assert not marker.exists(), "a forged message was unpickled"
    # raw, unsigned, wrong key, spliced, replay; the first valid one from an unknown peer
    # is dropped after the check (never unpickled either).
    assert pool.verifier.dropped == before + 5
    # The engines still serve.
    ctx.comp(J.work, lab, "after", job_id="after")
    assert guarded(ctx.parmake, n=2).ran == 1
    assert sorted(pool.pids()) == pids
    assert not marker.exists()


# -- forged messages to an engine -----------------------------------------------------------

class _FakeKernel:
    """A ROUTER the test controls, and one real engine process connected to it."""

    def __init__(self, store: Path, key: bytes):
        self.dir = tempfile.mkdtemp(prefix="nbt-")
        self.endpoint = f"ipc://{self.dir}/k"
        self.zmq = zmq.Context()
        self.router = self.zmq.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(self.endpoint)
        self.identity = b"engine-under-test"
        self.verifier = Verifier(key)
        self.pending: list[tuple[str, dict]] = []
        (store / "results").mkdir(parents=True, exist_ok=True)
        config = {"endpoint": self.endpoint, "key": key.hex(), "identity": self.identity.decode(),
                  "store": str(store), "parent": os.getpid(), "durable": False}
        self.proc = subprocess.Popen([PYTHON, "-m", ENGINE_MODULE], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.proc.stdin.write((json.dumps(config) + "\n").encode())
        self.proc.stdin.close()

    def send(self, frames: list[bytes]) -> None:
        self.router.send_multipart([self.identity, *frames])

    def receive(self, timeout: float = 30.0) -> tuple[str, dict]:
        """The engine's next message; those it sent together (``many``) one by one."""
        if not self.pending:
            assert self.router.poll(int(timeout * 1000)), "the engine said nothing"
            frames = self.router.recv_multipart()
            assert frames[0] == self.identity
            opened = self.verifier.open(frames[1:], frames[0])
            assert opened is not None, "the engine's message does not verify"
            kind, payloads = opened
            if kind != "many":
                return kind, _named(kind, json.loads(payloads[0]))
            self.pending += [(kind, _named(kind, meta))
                             for kind, meta, _ in pickle.loads(payloads[0])]
        return self.pending.pop(0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stderr.close()
        self.router.close(0)
        self.zmq.term()
        shutil.rmtree(self.dir, ignore_errors=True)


def _named(kind: str, meta):
    """A ``done`` META is a list (shared/outcomes.py): its job, as other METAs have it."""
    return {"job_id": meta[DONE_JOB]} if kind == "done" else meta


@pytest.mark.timeout(60)
def test_forged_messages_to_an_engine_are_dropped_unread(tmp_path, marker):
    key = os.urandom(KEY_BYTES)
    fake = _FakeKernel(tmp_path / "store", key)
    try:
        kind, meta = fake.receive()
        assert kind == "hello" and meta["pid"] == fake.proc.pid
        signer, wrong = Signer(key), Signer(os.urandom(KEY_BYTES))
        out = tmp_path / "ran.txt"

        def job(job_id: str, func_key: str, payload: bytes) -> list[bytes]:
            # A job as the kernel sends it (shared/outcomes.py, JOB_*).
            return [pickle.dumps([[job_id, func_key, False, {}, [], None, None, None, None]]),
                    payload]

        good_args = pickle.dumps(((str(out), "one"), {}))
        # Forged functions and jobs, each of which would create the marker if unpickled.
        fake.send([evil(marker)])
        fake.send([b"func 1", b"evil", evil(marker)])
        fake.send(wrong.frames("func", b"evil", evil(marker)))
        fake.send(wrong.frames("jobs", *job("forged", "evil", evil(marker))))
        fake.send([b"jobs 1", *job("forged", "evil", evil(marker))])
        # The real function, then a job signed right, sent twice (the second a replay),
        # then a second job; a valid signature moved onto an evil payload in between.
        fake.send(signer.frames("func", b"good", cloudpickle.dumps(J.write_line)))
        first = signer.frames("jobs", *job("j1", "good", good_args))
        fake.send(first)
        fake.send(first)
        fake.send([first[0], first[1].replace(good_args, evil(marker))])
        fake.send(signer.frames("jobs", *job("j2", "good", pickle.dumps(((str(out), "two"),
                                                                          {})))))
        done = []
        while "j2" not in done:
            kind, meta = fake.receive()
            assert kind in ("done", "durable"), (kind, meta)
            if kind == "done":
                done.append(meta["job_id"])
        # The engine runs its jobs in order: had the replay been accepted, it would have
        # run between j1 and j2.
        assert done == ["j1", "j2"]
        assert out.read_text().splitlines() == ["one", "two"]
        assert not marker.exists(), "the engine unpickled a forged message"

        # A forged stop is ignored; a signed one ends the engine.
        fake.send([b"stop 99"])
        fake.send(wrong.frames("stop"))
        fake.send(signer.frames("func", b"again", cloudpickle.dumps(J.write_line)))
        fake.send(signer.frames("jobs", *job("j3", "again", pickle.dumps(((str(out), "three"),
                                                                          {})))))
        kind, meta = fake.receive()
        while kind == "durable":
            kind, meta = fake.receive()
        assert (kind, meta["job_id"]) == ("done", "j3"), "the engine obeyed a forged stop"
        fake.send(signer.frames("stop"))
        assert fake.proc.wait(10) == 0
        assert not marker.exists()
    finally:
        fake.close()


@pytest.mark.timeout(60)
def test_an_engine_without_its_kernel_exits(tmp_path):
    """An engine whose parent is not the pid its config names exits at once (it was
    started by something else, or its kernel is already gone)."""
    store = tmp_path / "store"
    (store / "results").mkdir(parents=True)
    d = tempfile.mkdtemp(prefix="nbt-")
    try:
        config = {"endpoint": f"ipc://{d}/k", "key": os.urandom(KEY_BYTES).hex(),
                  "identity": "orphan", "store": str(store), "parent": 1, "durable": False}
        proc = subprocess.Popen([PYTHON, "-m", ENGINE_MODULE], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.communicate((json.dumps(config) + "\n").encode(), timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_message_is_one_signed_body_and_a_malformed_one_is_dropped():
    key = os.urandom(KEY_BYTES)
    signer, verifier = Signer(key), Verifier(key)
    frames = signer.frames("jobs", b"meta", b"", b"x" * 100_000)
    assert len(frames) == 2
    assert verifier.open(frames, b"p") == ("jobs", [b"meta", b"", b"x" * 100_000])
    # Signed right but not a body the sender could have made (a length table that lies,
    # no header): dropped, never taken apart further.
    many = wire.pack(b"many 2", tuple(b"p%d" % i for i in range(50)))
    for body in (b"", b"\x00\x00\x00\x05" + b"\x00" * 8, wire.pack(b"nospace", ()),
                 b"\xff\xff\xff\xff" + b"\x00" * 64,  # more parts than bytes to size them
                 many[:-1], many + b"x"):  # the parts' sizes and the body disagree
        assert verifier.open([wire._mac(key, body), body], b"p") is None
    assert verifier.dropped == 6
    assert wire.unpack(many) == [b"many 2", *(b"p%d" % i for i in range(50))]
