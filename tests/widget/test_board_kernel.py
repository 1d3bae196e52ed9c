"""The job board's kernel side, in a real kernel: what it sends on iopub (comm_open,
comm_msg, display_data, update_display_data), read as a front end would.

- a make sends few batches of changes, at least ~100 ms apart, with everything a click
  shows (traceback, captured output) for the failed job;
- the widget's state at the end is the final snapshot, and the output's text/plain and
  text/html fallbacks are updated to the final states;
- ``show`` rebuilds the board from the store, also in a kernel that registered no job;
- dynamic children arrive with their parent while it runs;
- on an idle kernel the board answers the front end (details, remake, clean).
"""

from __future__ import annotations

import re

import pytest
from jupytools import Kernel

pytestmark = pytest.mark.timeout(180)

JOBS = """\
import time
from nbmake_ext import comp, comp_dynamic

def work(i):
    time.sleep(0.004)
    print("working on", i)
    return i

def boom(x):
    print("about to fail")
    raise ValueError(f"bad value {x}")

ps = [comp(work, i, job_id=f"work-{i:03d}") for i in range(100)]
bad = comp(boom, 0, job_id="boom")  # in the middle: it fails while the run goes on
ps += [comp(work, i, job_id=f"work-{i:03d}") for i in range(100, 200)]
after = comp(work, bad, job_id="after")
"""


@pytest.fixture(scope="module")
def kernel(jupyter_env, tmp_path_factory):
    with Kernel(tmp_path_factory.mktemp("board-kernel"), jupyter_env) as k:
        yield k


@pytest.fixture
def nb(kernel, tmp_path) -> Kernel:
    """The module's kernel in this test's directory, with its own store."""
    kernel.ok(f"%reset -f\n%cd {tmp_path}\n%load_ext nbmake_ext\n%nbmake store .nbmake")
    kernel.cwd = tmp_path
    return kernel


class Board:
    """One board as a front end sees it from the iopub messages of one request."""

    def __init__(self, msgs: list[dict]):
        opens = [m for m in msgs if m["msg_type"] == "comm_open"
                 and m["content"]["data"]["state"].get("_model_name") == "AnyModel"]
        assert len(opens) == 1, [m["msg_type"] for m in msgs]
        self.open = opens[0]
        self.id = self.open["content"]["comm_id"]
        self.state = dict(self.open["content"]["data"]["state"])
        self.deltas: list[tuple[float, dict]] = []
        self.updates: list[dict] = []
        for m in msgs:
            if m["msg_type"] != "comm_msg" or m["content"]["comm_id"] != self.id:
                continue
            data = m["content"]["data"]
            if data["method"] == "custom":
                if data["content"].get("t") == "delta":
                    self.deltas.append((m["header"]["date"].timestamp(), data["content"]))
            elif data["method"] == "update":
                self.updates.append(data["state"])
                self.state.update(data["state"])
        # Its output: the widget's view while a command runs, else its static board.
        host = f'data-nbmake-board="{self.state["_uid"]}"'
        self.displays = [m for m in msgs if m["msg_type"] == "display_data"
                         and ("application/vnd.jupyter.widget-view+json" in m["content"]["data"]
                              or host in m["content"]["data"].get("text/html", ""))]
        self.updated = [m for m in msgs if m["msg_type"] == "update_display_data"]

    def jobs(self, data: dict | None = None) -> dict[str, str]:
        """job id -> state letter, in a snapshot."""
        data = data or self.state["data"]
        return dict(zip(data["ids"], data["st"]))

    def extras(self, job_id: str) -> dict:
        data = self.state["data"]
        return data["x"][str(data["ids"].index(job_id))]


def test_a_make_sends_few_batches_100ms_apart_with_details(nb):
    nb.ok(JOBS)
    reply = nb.fails("%make")
    board = Board(reply.msgs)
    # At the start: every job, none run, and the run's expectations.
    assert set(board.jobs(board.open["content"]["data"]["state"]["data"]).values()) == {"t"}
    assert board.open["content"]["data"]["state"]["run"]["exp"] == 202

    times = [t for t, _ in board.deltas]
    assert 2 <= len(times) < 60, len(times)  # 200 jobs: far fewer messages than jobs
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.095, gaps
    changed = [jid for _, d in board.deltas for jid in d["j"]]
    assert len(set(changed)) >= 150

    # What a click on the failed job shows travelled with the change.
    [failed] = [d["j"]["boom"] for _, d in board.deltas if "boom" in d["j"]
                and d["j"]["boom"]["s"] == "f"]
    x = failed["x"]
    assert "ValueError: bad value 0" in x["tb"] and x["out"] == "about to fail\n"
    assert x["err"] == "ValueError: bad value 0"
    blocked = [d["j"]["after"] for _, d in board.deltas if "after" in d["j"]]
    assert blocked[0]["s"] == "b" and blocked[0]["x"]["by"] == "boom"

    # The end: the final snapshot is the widget's state; the run is over.
    final = board.jobs()
    assert final["boom"] == "f" and final["after"] == "b"
    assert sum(1 for s in final.values() if s == "d") == 200
    assert board.extras("boom")["tb"].endswith("ValueError: bad value 0\n")
    assert board.extras("boom")["out"] == "about to fail\n"
    assert board.extras("after")["by"] == "boom"
    assert board.extras("work-007")["out"] == "working on 7\n"
    run = board.state["run"]
    assert not run["active"] and run["outcome"] == "failed" and run["fin"] == 202
    assert run["summary"].startswith("make: 200 done, 1 failed, 1 blocked")


def code_busy(msgs: list[dict]) -> list[str]:
    """The values the kernel's shared BoardCode model's ``busy`` took, in order."""
    return [m["content"]["data"]["state"]["busy"] for m in msgs if m["msg_type"] == "comm_msg"
            and m["content"]["data"].get("method") == "update"
            and "busy" in m["content"]["data"].get("state", {})]


def test_batches_and_snapshots_are_numbered(nb):
    """The front end drops a batch that its snapshot holds already, whatever the order they
    reach it in: a batch carries its number, a snapshot the number of the last batch it
    holds."""
    nb.ok(JOBS.replace("range(100)", "range(30)").replace("range(100, 200)", "range(30, 60)"))
    board = Board(nb.fails("%make").msgs)
    numbers = [d["n"] for _, d in board.deltas]
    assert len(numbers) >= 1 and numbers == list(range(1, len(numbers) + 1))
    assert board.open["content"]["data"]["state"]["data"]["n"] == 0
    assert board.state["data"]["n"] == numbers[-1]
    assert not board.state["run"]["active"]
    # After the snapshot, a batch (details asked for on the idle kernel) comes after it.
    out = request(nb, board.id, {"t": "details", "job": "work-001", "re": "r1"})
    [delta] = [m["content"]["data"]["content"] for m in out if m["msg_type"] == "comm_msg"
               and m["content"]["data"].get("content", {}).get("t") == "delta"]
    assert delta["n"] == numbers[-1] + 1


def test_the_kernel_is_not_busy_once_a_command_ended_however_it_ended(nb):
    nb.ok("from nbmake_ext import comp, current_context\n"
          "def bad(x):\n    raise ValueError(x)\n"
          "ok = comp(abs, -1, job_id='ok')\nno = comp(bad, 1, job_id='no')\n"
          "ctx = current_context()")
    ends = []
    for cell, expect_error in [("%make ok", None), ("%make no", "JobsFailed")]:
        reply = nb.ok(cell) if expect_error is None else nb.fails(cell)
        ends.append((Board(reply.msgs).state["run"], code_busy(reply.msgs)))
    # An error in the run, then one while the board reads the final states back as well.
    nb.ok("def on_fire(*a, **k):\n    raise RuntimeError('store on fire')\n"
          "ctx.make = on_fire")
    reply = nb.fails("%make ok")
    ends.append((Board(reply.msgs).state["run"], code_busy(reply.msgs)))
    nb.ok("from nbmake_ext.ui.board import Board as B\n"
          "reload, B.reload = B.reload, lambda self, ctx: on_fire()")
    try:
        reply = nb.fails("%make ok")
    finally:
        nb.ok("B.reload = reload\ndel ctx.make")
    ends.append((Board(reply.msgs).state["run"], code_busy(reply.msgs)))
    assert [run["outcome"] for run, _ in ends] == ["finished", "failed", "error", "error"]
    for run, busy in ends:
        assert not run["active"]
        assert busy[-1] == "" and "make" in busy, busy
    assert ends[2][0]["error"] == "RuntimeError: store on fire"


def test_fallback_is_updated_to_the_final_states(nb):
    nb.ok(JOBS)
    reply = nb.fails("%make")
    board = Board(reply.msgs)
    [display] = board.displays
    display_id = display["content"]["transient"]["display_id"]
    first = display["content"]["data"]["text/plain"]
    assert first == "job board (make, running): 202 jobs: 202 todo"
    assert not re.search(r"^(make|remake): ", first, re.M)  # the summary line is printed apart

    [update] = board.updated
    assert update["content"]["transient"]["display_id"] == display_id
    data = update["content"]["data"]
    # The static board alone: a saved notebook shows it where no kernel runs (no widget
    # view whose model would be missing), and the live page mounts the board over it.
    assert set(data) == {"text/plain", "text/html"}
    assert f'<div class="nbmake-board" data-nbmake-board="{board.state["_uid"]}">' \
        in data["text/html"]
    plain = data["text/plain"]
    assert re.match(r"job board \(make, finished with failures in [\d.]+m?s\): 202 jobs: "
                    r"200 done, 1 failed, 1 blocked", plain)
    assert re.search(r"^failed +boom +boom +ValueError: bad value 0$", plain, re.M)
    assert re.search(r"^blocked +after +work +blocked by boom$", plain, re.M)
    assert re.search(r"^work +201 +200 +1$", plain, re.M)
    assert plain.index("failed   boom") < plain.index("blocked  after")
    html = data["text/html"]
    assert "ValueError: bad value 0" in html and "traceback of boom" in html
    assert 'data-state="failed"' in html and "#d62828" in html  # the SPEC colours
    assert "<table" in html and ">after<" in html


def test_show_rebuilds_the_board_from_the_store_in_a_kernel_that_registered_none(
        nb, fresh_kernel):
    nb.ok(JOBS)
    nb.fails("%make")
    other = fresh_kernel(nb.cwd)
    other.ok("%load_ext nbmake_ext")
    reply = other.ok("%nbmake show")
    board = Board(reply.msgs)
    jobs = board.jobs()
    assert len(jobs) == 202 and jobs["boom"] == "f" and jobs["after"] == "b"
    assert "ValueError: bad value 0" in board.extras("boom")["tb"]
    assert board.state["run"]["cmd"] == ""
    [display] = board.displays
    assert "application/vnd.jupyter.widget-view+json" not in display["content"]["data"]
    plain = display["content"]["data"]["text/plain"]
    assert plain.startswith("job board: 202 jobs: 200 done, 1 failed, 1 blocked")
    assert "boom" in plain

    # Targets choose jobs; an unknown one fails before a board is shown.
    board = Board(other.ok("%nbmake show failed blocked").msgs)
    assert board.jobs() == {"boom": "f", "after": "b"}
    reply = other.fails("%nbmake show nothing-like-this")
    assert "UnknownTarget" in reply.error["ename"]
    assert not [m for m in reply.msgs if m["msg_type"] == "comm_open"]


DYNAMIC = """\
import time
from nbmake_ext import comp, comp_dynamic

def part(i):
    time.sleep(0.3)
    return i

def expand(ctx, n):
    return [ctx.comp(part, i, job_id=f"part-{i}") for i in range(n)]

def total(values):
    return sum(values)

parts = comp_dynamic(expand, 4, job_id="expand")
result = comp(total, parts, job_id="total")
"""


def test_dynamic_children_arrive_with_their_parent_while_it_runs(nb):
    nb.ok(DYNAMIC)
    board = Board(nb.ok("%parmake 2").msgs)
    seen: dict[str, str] = {}
    children_while_running = []
    for _, delta in board.deltas:
        for jid, change in delta["j"].items():
            if "p" in change:
                assert change["p"] == "expand" and change["f"] == "part" and change["r"] == 1
                children_while_running.append(seen.get("expand"))
            seen[jid] = change["s"]
    assert sorted(c for c in children_while_running) == ["r"] * 4
    data = board.state["data"]
    parent_of = {jid: data["ids"][p] for jid, p in zip(data["ids"], data["par"]) if p >= 0}
    assert parent_of == {f"part-{i}": "expand" for i in range(4)}
    assert set(board.jobs().values()) == {"d"}


def request(k: Kernel, comm_id: str, content: dict) -> list[dict]:
    """Sends a message from the "front end" to the board; returns what it caused on iopub."""
    msg = k.kc.session.msg("comm_msg", {"comm_id": comm_id,
                                        "data": {"method": "custom", "content": content}})
    k.kc.shell_channel.send(msg)
    out = []
    while True:
        m = k.kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        out.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return out


def replies(msgs: list[dict]) -> list[dict]:
    return [m["content"]["data"]["content"] for m in msgs if m["msg_type"] == "comm_msg"
            and m["content"]["data"].get("method") == "custom"
            and m["content"]["data"]["content"].get("t") == "reply"]


def test_buttons_act_on_an_idle_kernel(nb):
    nb.ok(JOBS.replace("range(100)", "range(2)").replace("range(100, 200)", "range(2, 3)"))
    board = Board(nb.fails("%make").msgs)

    out = request(nb, board.id, {"t": "details", "job": "work-001", "re": "r1"})
    assert replies(out) == [{"t": "reply", "re": "r1", "ok": True, "msg": "details loaded"}]
    [delta] = [m["content"]["data"]["content"] for m in out if m["msg_type"] == "comm_msg"
               and m["content"]["data"].get("content", {}).get("t") == "delta"]
    assert delta["j"]["work-001"]["x"]["why"] == [] and delta["j"]["work-001"]["s"] == "d"

    out = request(nb, board.id, {"t": "clean", "job": "work-001", "re": "r2"})
    assert replies(out)[0]["msg"] == "cleaned work-001"
    states = [m["content"]["data"]["state"] for m in out if m["msg_type"] == "comm_msg"
              and m["content"]["data"]["method"] == "update" and "data" in m["content"]["data"]["state"]]
    assert Board.jobs(board, states[-1]["data"])["work-001"] == "t"

    out = request(nb, board.id, {"t": "remake", "job": "work-001", "re": "r3"})
    [reply] = replies(out)
    assert reply["ok"] and reply["msg"].startswith("remake: 1 done")
    states = [m["content"]["data"]["state"] for m in out if m["msg_type"] == "comm_msg"
              and m["content"]["data"]["method"] == "update" and "data" in m["content"]["data"]["state"]]
    assert Board.jobs(board, states[-1]["data"])["work-001"] == "d"
    assert states[-1]["run"]["cmd"] == "remake" and not states[-1]["run"]["active"]

    out = request(nb, board.id, {"t": "details", "job": "no-such-job", "re": "r4"})
    [reply] = replies(out)
    assert not reply["ok"] and "no-such-job" in reply["msg"]


def test_widget_is_small_shared_and_reads_well(nb):
    nb.ok("from nbmake_ext import comp\nfor i in range(3): comp(abs, -i, job_id=f'a{i}')")
    one = Board(nb.ok("%make").msgs)
    two = Board(nb.ok("%nbmake show").msgs)
    # Each board's own ES module is a small loader; the code is one shared model.
    assert len(one.state["_esm"]) < 2000
    assert one.state["_code"] == two.state["_code"]
    code_opens = [m for m in nb.ok("%nbmake show").msgs if m["msg_type"] == "comm_open"
                  and "code" in m["content"]["data"]["state"]]
    assert code_opens == []  # opened once per kernel, with the first board
    reply = nb.ok("from nbmake_ext.ui.widget import JobBoard\nfrom nbmake_ext import current_context\n"
                  "b = JobBoard.for_show(current_context())\nprint(repr(b))")
    assert reply.text.strip() == "<JobBoard show: 3 jobs: 3 done>"


def test_unknown_target_fails_before_a_board_is_shown(nb):
    nb.ok("from nbmake_ext import comp\ncomp(abs, 1, job_id='one')")
    reply = nb.fails("%make nothing-like-this")
    assert reply.error["ename"] == "UnknownTarget"
    assert not [m for m in reply.msgs if m["msg_type"] in ("comm_open", "display_data")]


def test_a_long_job_in_the_kernel_shows_as_running_and_an_interrupt_ends_the_board(nb):
    nb.ok("import time\nfrom nbmake_ext import comp\n"
          "def nap(i):\n    time.sleep(0 if i else 60)\n    return i\n"
          "naps = [comp(nap, i, job_id=f'nap-{i}') for i in range(2)]")
    msg_id = nb.kc.execute("%make")
    msgs, running = [], False
    while not running:  # the long job is shown running while it holds the kernel
        m = nb.kc.get_iopub_msg(timeout=30)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(m)
        data = m["content"].get("data", {}) if m["msg_type"] == "comm_msg" else {}
        running = data.get("content", {}).get("j", {}).get("nap-0", {}).get("s") == "r"
    nb.km.interrupt_kernel()
    while True:
        m = nb.kc.get_iopub_msg(timeout=30)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    board = Board(msgs)
    assert board.state["run"]["outcome"] == "interrupted" and not board.state["run"]["active"]
    jobs = board.jobs()
    assert jobs["nap-0"] == "t" and "r" not in jobs.values()  # put back as it was
    plain = board.updated[-1]["content"]["data"]["text/plain"]
    assert plain.startswith("job board (make, interrupted in ")
    assert code_busy(msgs)[-1] == ""
    assert [m for m in msgs if m["msg_type"] == "error"][0]["content"]["ename"] == "KeyboardInterrupt"


def test_console_show_prints_the_summary(nb):
    import subprocess
    import sys

    nb.ok(JOBS.replace("range(100)", "range(2)").replace("range(100, 200)", "range(2, 3)"))
    nb.fails("%make")
    out = subprocess.run([sys.executable, "-m", "nbmake_ext", "show"], cwd=nb.cwd,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "job board: 5 jobs: 3 done, 1 failed, 1 blocked"
    assert re.search(r"^failed +boom +boom +ValueError: bad value 0$", out.stdout, re.M)
    assert re.search(r"^blocked +after +work +blocked by boom$", out.stdout, re.M)


def test_executed_notebook_keeps_the_final_fallback_and_exports_it(tmp_path, jupyter_env):
    """What `jupyter nbconvert --execute` saves, and what a static HTML export shows."""
    import os

    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("%load_ext nbmake_ext\n" + JOBS.replace(
        "range(100)", "range(2)").replace("range(100, 200)", "range(2, 3)")),
        new_code_cell("%make", metadata={"tags": ["raises-exception"]})],
        metadata={"kernelspec": {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}})
    saved = dict(os.environ)
    os.environ.update(jupyter_env)
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    [board] = [o for o in nb.cells[1].outputs if o.output_type == "display_data"
               and "data-nbmake-board" in o.data.get("text/html", "")]
    assert "application/vnd.jupyter.widget-view+json" not in board.data
    assert board.data["text/plain"].startswith(
        "job board (make, finished with failures in ")
    assert "ValueError: bad value 0" in board.data["text/html"]
    uid = re.search(r'data-nbmake-board="(\w+)"', board.data["text/html"]).group(1)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    [model] = [m["state"] for m in state.values() if m["state"].get("_uid") == uid]
    assert dict(zip(model["data"]["ids"], model["data"]["st"]))["boom"] == "f"
    assert len(model["_esm"]) < 2000  # saved with every board: the code is saved once

    # nbconvert's own priorities: the static board, every job with its state.
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "job board (make, finished with failures" in html
    assert "ValueError: bad value 0" in html and "blocked by boom" in html
    for job, st in [("work-000", "done"), ("work-001", "done"), ("work-002", "done"),
                    ("boom", "failed"), ("after", "blocked")]:
        assert f'data-job-id="{job}" data-state="{st}"' in html
    nbformat.write(nb, tmp_path / "executed.ipynb")
