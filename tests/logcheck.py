"""nbmake_ext's warnings in tests. The library logs them (``logging``, loggers under
``nbmake_ext``); a test that expects one says so with ``warns`` or ``library_warnings``,
and any other one fails the test (the autouse fixture in conftest.py)."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Iterator

LOGGER = "nbmake_ext"


class Recorder(logging.Handler):
    """Keeps the records of WARNING and above it sees."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def library_warnings() -> Iterator[list[logging.LogRecord]]:
    """The records of the warnings nbmake_ext logs inside the block: the test expects
    them (any, or none), so they do not fail it."""
    recorder = Recorder()
    logger = logging.getLogger(LOGGER)
    logger.addHandler(recorder)
    try:
        yield recorder.records
    finally:
        logger.removeHandler(recorder)
        for record in recorder.records:
            record.nbmake_expected = True


@contextlib.contextmanager
def warns(match: str) -> Iterator[list[logging.LogRecord]]:
    """``pytest.warns`` for nbmake_ext's logged warnings: the block logs at least one whose
    message matches ``match`` (a regular expression)."""
    with library_warnings() as records:
        yield records
    messages = [r.getMessage() for r in records]
    assert any(re.search(match, m) for m in messages), \
        f"no warning matching {match!r} was logged; logged: {messages}"


def messages(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]
