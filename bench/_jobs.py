"""The trivial jobs every tool runs (a module, so all tools pickle them by reference)."""

CALLS = 0  # how many times a job body actually ran in this process (sanity check)


def work(i):
    global CALLS
    CALLS += 1
    return i * 2


def step(prev, i):
    """Chain shape: job i consumes the result of job i-1."""
    global CALLS
    CALLS += 1
    return prev + i


def deaf_sleep(seconds):
    """Blocks the signals a time limit could use, then sleeps: stopped only by a kill."""
    import signal
    import time

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGINT})
    time.sleep(seconds)


def size_of(path):
    """A job with an input file (bench_files.py; it reads no global: CALLS changes as
    jobs run, and the code a job reads is part of its signature)."""
    return len(path)


def total(*parts):
    """Fan-in shape: one job taking every result."""
    global CALLS
    CALLS += 1
    return sum(parts)
