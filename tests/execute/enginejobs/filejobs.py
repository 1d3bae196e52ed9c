"""Jobs with files (SPEC 10) for tests/execute/test_files.py: each logs an event in the
lab when it runs (enginejobs/jobs.py ``log``), so a test counts runs by events."""

from __future__ import annotations

import os
import shutil

from .jobs import log


def count_lines(lab: str, path: str) -> int:
    log(lab, "count")
    assert type(path) is not bytes and isinstance(path, str)
    with open(path) as f:
        return sum(1 for _ in f)


def write(lab: str, text: str, out: str, salt: int = 0) -> str:
    """Writes ``text`` to ``out`` (its directory made by nbmake_ext); logs whether an
    old ``out`` was still there when it started."""
    log(lab, f"write-{'found-old' if os.path.exists(out) else 'clean'}")
    with open(out, "w") as f:
        f.write(text)
    return "written"


def write_named(lab: str, text: str, *, name: str, folder: str = "figs") -> str:
    """Declared as ``{folder}/{name}.txt``."""
    log(lab, f"write-{name}")
    path = os.path.join(folder, f"{name}.txt")
    with open(path, "w") as f:
        f.write(text)
    return path


def upper(lab: str, src: str, out: str) -> int:
    log(lab, "upper")
    with open(src) as f:
        text = f.read()
    with open(out, "w") as f:
        f.write(text.upper())
    return len(text)


def fill_dir(lab: str, out: str, n: int) -> int:
    log(lab, "fill")
    for i in range(n):
        with open(os.path.join(out, f"part-{i}.txt"), "w") as f:
            f.write(str(i))
    return n


def list_dir(lab: str, folder: str) -> list[str]:
    log(lab, "list")
    return sorted(os.listdir(folder))


def forgets(lab: str, out: str, other: str) -> None:
    """Declares ``out`` and ``other``, writes only ``out``."""
    log(lab, "forgets")
    with open(out, "w") as f:
        f.write("half")


def fails_after_writing(lab: str, out: str) -> None:
    log(lab, "fails")
    with open(out, "w") as f:
        f.write("partial")
    raise ValueError("broken after writing")


def copy(lab: str, src: str, dst: str) -> None:
    log(lab, "copy")
    shutil.copyfile(src, dst)


# -- pypipegraph's "30 second summary" (its README) -------------------------------------------

def pypipegraph_a(out: str) -> None:
    with open(out, "w") as f:
        f.write("hello world")


def pypipegraph_b(src: str, out: str) -> None:
    with open(src) as f:
        text = f.read()
    with open(out, "w") as f:
        f.write(text + ", once again")


def shell_children(context, names: list[str]) -> list:
    """A dynamic job whose children are shell steps, one per name, and one that joins
    their outputs (a dependency through ``promise.outputs``)."""
    steps = [context.sh("echo {name} > {output}".replace("{name}", name),
                        outputs=[f"made/{name}.txt"]) for name in names]
    joined = context.sh("cat {inputs} > {output}", inputs=steps, outputs=["made/all.txt"])
    return [*steps, joined]
