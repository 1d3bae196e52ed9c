"""Tab completion of job ids after ``%make``, ``%remake``, ``%clean`` and ``%nbmake CMD``.

A matcher of IPython's v2 API: job ids hold characters (``+``) that IPython's own token
splitting cuts at, so the matcher says itself which fragment of the line it completes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.completer import CompletionContext, SimpleCompletion, context_matcher

from ..commands import COMMANDS
from .magics import KERNEL_COMMANDS

if TYPE_CHECKING:
    from .extension import KernelSession

MAX_COMPLETIONS = 500
_OWN_MAGICS = {f"%{name}" for name, c in COMMANDS.items() if c.own_magic}
_TAKES_JOBS = {name for name, c in COMMANDS.items() if c.args} | {"debug"}


def job_id_matcher(session: "KernelSession"):
    @context_matcher()
    def nbmake_job_ids(context: CompletionContext) -> dict[str, Any]:
        line = context.text_until_cursor
        words = line.split()
        fragment = "" if not words or line[-1].isspace() else words[-1]
        if words and line[-1].isspace():
            words.append("")
        candidates = _candidates(session, words)
        matches = [c for c in candidates if c.startswith(fragment)][:MAX_COMPLETIONS]
        return {"completions": [SimpleCompletion(m, type="job") for m in matches],
                "matched_fragment": fragment, "suppress": bool(matches)}

    return nbmake_job_ids


def _candidates(session: "KernelSession", words: list[str]) -> list[str]:
    """What may be typed where the last word is: a command name or a job id."""
    if len(words) < 2:
        return []
    if words[0] in _OWN_MAGICS:
        return _job_ids(session)
    if words[0] != "%nbmake":
        return []
    if len(words) == 2:
        return [*COMMANDS, *KERNEL_COMMANDS]
    return _job_ids(session) if words[1] in _TAKES_JOBS else []


def _job_ids(session: "KernelSession") -> list[str]:
    try:
        session.ctx.sync()  # also the jobs of the store this kernel has not defined yet
        return list(session.ctx.graph.specs)
    except Exception:  # noqa: BLE001 - a completer must never raise
        return []
