"""One measured run of one tool, in a fresh process (started by bench_serial.py).

    python _worker.py TOOL PHASE SHAPE N DIR OUT [--no-fsync]

TOOL   nbmake | joblib | compmake | pickle | pickle-load | pickle-exists
PHASE  reg    register N jobs on an empty store, run nothing
       build  first make on an empty store: register + run + persist N jobs
       noop   everything is stored already: register again + make, nothing to run
SHAPE  indep  N independent jobs work(i)
       chain  job i = step(result of job i-1, i)

Writes a JSON dict of timestamps (seconds) and checks to OUT. stdout is not used for
results (compmake prints its progress there).
"""

import time

T_START_WALL = time.time()  # before any import: the parent subtracts its own launch time
T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    tool, phase, shape, n, store, out = sys.argv[1:7]
    n = int(n)
    fsync = "--no-fsync" not in sys.argv[7:]
    res = {"tool": tool, "phase": phase, "shape": shape, "n": n, "t_start_wall": T_START_WALL}
    try:
        RUNNERS[tool](phase, shape, n, store, fsync, res)
    except BaseException as exc:  # noqa: BLE001 - reported in the table, not hidden
        res["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        res["traceback"] = traceback.format_exc()
    import _jobs

    res["calls"] = _jobs.CALLS
    with open(out, "w") as f:
        json.dump(res, f)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip atexit hooks (nbmake's close() would store the definitions of a `reg` run):
    # everything that counts has been measured and written.
    os._exit(0)


def stamp(res: dict, name: str) -> None:
    res[name] = time.perf_counter() - T0


# -- nbmake_ext ---------------------------------------------------------------------------

def run_nbmake(phase, shape, n, store, fsync, res):
    from nbmake_ext import Context
    from _jobs import step, work

    stamp(res, "imported")
    ctx = Context(store, durable=fsync)
    ctx.report = lambda line: res.__setitem__("report", line)
    stamp(res, "opened")
    comp = ctx.comp
    if shape == "indep":
        for i in range(n):
            comp(work, i)
    else:
        p = 0
        for i in range(n):
            p = comp(step, p, i)
    stamp(res, "registered")
    if phase == "reg":
        return
    report = ctx.make()
    stamp(res, "made")
    ctx.close()
    stamp(res, "closed")
    res["ran"], res["skipped"] = report.ran, report.skipped
    want_ran = n if phase == "build" else 0
    if report.ran != want_ran or report.ran + report.skipped != n or report.failed:
        res["error"] = f"unexpected make report: {report.line()}"


# -- joblib.Memory ------------------------------------------------------------------------

def run_joblib(phase, shape, n, store, fsync, res):
    import joblib
    from _jobs import step, work

    stamp(res, "imported")
    mem = joblib.Memory(location=store, verbose=0)
    stamp(res, "opened")
    if shape == "indep":
        f = mem.cache(work)
    else:
        f = mem.cache(step)
    stamp(res, "registered")
    if shape == "indep":
        for i in range(n):
            f(i)
    else:
        v = 0
        for i in range(n):
            v = f(v, i)
    stamp(res, "made")
    stamp(res, "closed")


# -- compmake -----------------------------------------------------------------------------

def run_compmake(phase, shape, n, store, fsync, res):
    import compmake
    from compmake import Context
    from compmake.state import set_compmake_config
    from _jobs import step, work

    # Quietest settings: no status line, no echo; compmake's own per-job work stays.
    for key, value in (("console_status", False), ("status_line_enabled", False),
                       ("interactive", False), ("echo", False), ("colorize", False),
                       ("set_proc_title", False)):
        set_compmake_config(key, value)
    res["version"] = getattr(compmake, "__version__", "?")
    stamp(res, "imported")
    c = Context(db=store)
    stamp(res, "opened")
    if shape == "indep":
        for i in range(n):
            c.comp(work, i)
    else:
        p = 0
        for i in range(n):
            p = c.comp(step, p, i)
    stamp(res, "registered")
    if phase == "reg":
        return
    c.batch_command("make")
    stamp(res, "made")
    stamp(res, "closed")


# -- the bare loop: one pickle file per job -----------------------------------------------

def run_pickle(phase, shape, n, store, fsync, res):
    import pickle
    from _jobs import step, work

    stamp(res, "imported")
    os.makedirs(store, exist_ok=True)
    stamp(res, "opened")
    stamp(res, "registered")
    join, replace = os.path.join, os.replace
    v = 0
    for i in range(n):
        v = work(i) if shape == "indep" else step(v, i)
        final = join(store, f"{i}.pkl")
        tmp = final + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(v, f, protocol=pickle.HIGHEST_PROTOCOL)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        replace(tmp, final)
    stamp(res, "made")
    stamp(res, "closed")


def run_pickle_load(phase, shape, n, store, fsync, res):
    """No-op make of the bare loop: every result is loaded back from its file."""
    import pickle

    stamp(res, "imported")
    stamp(res, "opened")
    stamp(res, "registered")
    join = os.path.join
    for i in range(n):
        with open(join(store, f"{i}.pkl"), "rb") as f:
            pickle.load(f)
    stamp(res, "made")
    stamp(res, "closed")


def run_pickle_exists(phase, shape, n, store, fsync, res):
    """No-op make of the bare loop, cheapest form: one os.path.exists per job."""
    stamp(res, "imported")
    stamp(res, "opened")
    stamp(res, "registered")
    join, exists = os.path.join, os.path.exists
    missing = sum(1 for i in range(n) if not exists(join(store, f"{i}.pkl")))
    stamp(res, "made")
    stamp(res, "closed")
    if missing:
        res["error"] = f"{missing} result files missing"


RUNNERS = {
    "nbmake": run_nbmake,
    "joblib": run_joblib,
    "compmake": run_compmake,
    "pickle": run_pickle,
    "pickle-load": run_pickle_load,
    "pickle-exists": run_pickle_exists,
}

if __name__ == "__main__":
    main()
