"""Summarise py-spy raw (collapsed) samples per thread: own and inclusive time per function.

    py-spy record --threads --idle --nonblocking -r 500 -f raw -o s.txt -- python script.py
    python bench/spy_summary.py s.txt [--top 25] [--within FUNC]

``--within make`` keeps, of the main thread, only the samples whose stack has a frame of
that function (drops imports and registration); background threads are kept whole.
"""

from __future__ import annotations

import argparse
import collections
import re

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    f = m.group("file")
    parts = f.split("/")
    if "nbmake_ext" in parts:
        f = "/".join(parts[parts.index("nbmake_ext"):])
    else:
        f = parts[-1]
    return f"{m.group('func')} ({f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--within", default=None,
                    help="main thread: only samples under a frame whose function is this")
    args = ap.parse_args()
    threads: dict[str, dict] = {}
    with open(args.raw) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            thread, frames = frames[0], frames[1:]
            is_main = not (frames and "(threading.py" in frames[0])
            if args.within and is_main and not any(
                    fr.startswith(args.within + " ") for fr in frames):
                continue
            name = "main" if is_main else thread.partition(": ")[2] or thread
            t = threads.setdefault(name, {"total": 0, "own": collections.Counter(),
                                          "incl": collections.Counter()})
            n = int(count)
            t["total"] += n
            if frames:
                t["own"][short(frames[-1])] += n
            for fr in set(map(short, frames)):
                t["incl"][fr] += n
    for name, t in sorted(threads.items(), key=lambda kv: -kv[1]["total"]):
        total = t["total"]
        print(f"\n## thread {name}: {total} samples")
        print("   own%  incl%  function")
        rows = sorted(set(t["own"]) | set(t["incl"]),
                      key=lambda fr: (-t["own"][fr], -t["incl"][fr]))[:args.top]
        for fr in rows:
            print(f"  {100 * t['own'][fr] / total:5.1f}  {100 * t['incl'][fr] / total:5.1f}  {fr}")
        print("   -- by inclusive time --")
        for fr, c in t["incl"].most_common(args.top):
            print(f"  {100 * t['own'][fr] / total:5.1f}  {100 * c / total:5.1f}  {fr}")


if __name__ == "__main__":
    main()
