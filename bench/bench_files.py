"""What input files cost (SPEC 10): looking at unchanged files before a make, and
fingerprinting a large output.

    .venv/bin/python bench/bench_files.py                 # 10,000 files of 16 KiB, 1 GiB file
    .venv/bin/python bench/bench_files.py --files 2000 --size 65536 --big-mb 256

1. 10,000 unchanged input files, each the ``File`` argument of its own job, after a make
   that fingerprinted them (the cache of (size, mtime, inode) -> fingerprint is in the
   store). In a fresh Context, as a new process would, best of ``--repeat``:
   - ``check``: what a make does for them: read the cache from the store, then one
     ``stat`` per file (files/fingerprints.py FileState);
   - ``hash all``: sha256 of every file's bytes, as a make without the cache would do
     (files in the page cache: reading them from disk would cost more);
   - ``bare stat``: ``os.stat`` of each file in a loop, nothing else;
   - ``no-op make``: register the 10,000 jobs and make, nothing to run, against the same
     with a plain argument instead of a File: the difference is what files cost a make.
2. A 1 GiB file (random bytes, in ``--dir``, deleted after): nbmake_ext's fingerprint
   (``hash_file``, what the process that ran a job takes of each output it wrote) in
   MB/s (10^6 bytes) beside ``sha256sum`` on the same file, best of ``--repeat``. The
   file was just written, so it is read from the page cache: both measure the hashing,
   not the disk (a disk slower than ~1.4 GB/s is the limit then, for both alike).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from nbmake_ext import Context, File  # noqa: E402
from nbmake_ext.files.fingerprints import FileState, hash_file  # noqa: E402
from _jobs import size_of  # noqa: E402


def make_files(root: str, n: int, size: int) -> list[str]:
    data = os.path.join(root, "data")
    os.makedirs(data)
    paths = []
    old = time.time_ns() - 60 * 10**9  # written a minute ago: not racily clean
    for i in range(n):
        path = os.path.join(data, f"f{i:05d}.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        os.utime(path, ns=(old, old))
        paths.append(path)
    return paths


def best(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def unchanged_files(n: int, size: int, repeat: int) -> None:
    root = tempfile.mkdtemp(prefix="nbmake-bench-files-")
    try:
        paths = make_files(root, n, size)
        store = os.path.join(root, "store")
        plain = os.path.join(root, "plain")
        with Context(store) as ctx:
            for p in paths:
                ctx.comp(size_of, File(p))
            ctx.make()
        with Context(plain) as ctx:
            for p in paths:
                ctx.comp(size_of, str(p))
            ctx.make()

        def check() -> None:
            with Context(store) as ctx:
                t0 = time.perf_counter()
                files = FileState(ctx.store.file_stats)
                for p in paths:
                    files(p)
                assert files.cache.hashed == 0
                check.seconds = min(getattr(check, "seconds", 1e9), time.perf_counter() - t0)

        def noop(where: str, arg) -> float:
            with Context(where) as ctx:
                t0 = time.perf_counter()
                for p in paths:
                    ctx.comp(size_of, arg(p))
                report = ctx.make()
                took = time.perf_counter() - t0
                assert report.ran == 0 and report.skipped == n, report.line()
                if arg is File:
                    assert ctx.files.cache.hashed == 0
            return took

        for _ in range(repeat):
            check()
        hashing = best(repeat, lambda: [hash_file(p) for p in paths])
        stats = best(repeat, lambda: [os.stat(p) for p in paths])
        with_files = min(noop(store, File) for _ in range(repeat))
        without = min(noop(plain, str) for _ in range(repeat))
        us = 1e6 / n
        print(f"{n} unchanged input files of {size} bytes, best of {repeat} (µs per file):")
        print(f"  check (cache from the store + stat)  {check.seconds * us:8.2f}"
              f"   ({check.seconds * 1e3:.1f} ms in all)")
        print(f"  hash all (sha256 of every file)      {hashing * us:8.2f}"
              f"   ({hashing * 1e3:.1f} ms)")
        print(f"  bare os.stat loop                    {stats * us:8.2f}"
              f"   ({stats * 1e3:.1f} ms)")
        print(f"  no-op make, {n} jobs with a File     {with_files * us:8.2f}"
              f"   ({with_files * 1e3:.1f} ms)")
        print(f"  no-op make, {n} jobs with a str      {without * us:8.2f}"
              f"   ({without * 1e3:.1f} ms): files add {(with_files - without) * us:.2f}"
              f" µs per job")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def big_file(mb: int, where: str | None, repeat: int) -> None:
    fd, path = tempfile.mkstemp(prefix="nbmake-bench-big-", dir=where)
    try:
        chunk = os.urandom(1 << 20)
        with os.fdopen(fd, "wb") as f:
            for _ in range(mb):
                f.write(chunk)
        size = mb << 20
        ours = best(repeat, lambda: hash_file(path))
        theirs = best(repeat, lambda: subprocess.run(["sha256sum", path], check=True,
                                                     stdout=subprocess.DEVNULL))
        assert hash_file(path) == subprocess.run(["sha256sum", path], check=True,
                                                 capture_output=True, text=True
                                                 ).stdout.split()[0]
        print(f"fingerprint of a {mb} MiB file (page cache), best of {repeat}:")
        print(f"  nbmake_ext hash_file  {size / ours / 1e6:7.0f} MB/s   ({ours:.2f} s)")
        print(f"  sha256sum             {size / theirs / 1e6:7.0f} MB/s   ({theirs:.2f} s)")
        print("  (the same digest: a file's fingerprint is its sha256sum)")
    finally:
        os.remove(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=16 << 10, help="bytes per input file")
    parser.add_argument("--big-mb", type=int, default=1024, help="MiB of the large file")
    parser.add_argument("--dir", default=None, help="where the large file is written")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    unchanged_files(args.files, args.size, args.repeat)
    big_file(args.big_mb, args.dir, args.repeat)


if __name__ == "__main__":
    main()
