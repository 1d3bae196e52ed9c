"""Command results as notebook outputs: text and an HTML table in one mimebundle.

The HTML is what nbconvert output, static exports and GitHub show, so it stands alone:
inline styles, the SPEC colours and a legend.
"""

from __future__ import annotations

import re
import textwrap
from html import escape
from typing import Any

from ..core.states import COLOURS, STATES
from . import text


class View:
    """A displayable command result."""

    def __init__(self, plain: str, html: str):
        self.plain = plain
        self.html = html

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/plain": self.plain, "text/html": self.html}

    def __repr__(self) -> str:
        return self.plain


def _badge(state: str) -> str:
    colour = COLOURS.get(state, "#ccc")
    fg = "#fff" if state in ("done", "failed", "blocked") else "#222"
    return (f'<span data-state="{state}" style="background:{colour};color:{fg};'
            f'padding:0 6px;border-radius:8px;font-size:90%">{state}</span>')


def legend() -> str:
    return " ".join(_badge(s) for s in STATES)


_TABLE = 'style="border-collapse:collapse;font-family:monospace;font-size:12px"'
_CELL = 'style="padding:1px 8px;text-align:left;border-bottom:1px solid #eee"'


def html_table(headers: list[str] | None, rows: list[list[str]]) -> str:
    """Cells are HTML already; headers are text. No headers: a two-column form."""
    head = "" if headers is None else (
        "<thead><tr>" + "".join(f"<th {_CELL}>{escape(h)}</th>" for h in headers) + "</tr></thead>")
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {_TABLE}>{head}<tbody>{body}</tbody></table>"


def ls_view(rows: list, limit: int = 500) -> View:
    """At most ``limit`` rows, so that a big store does not flood the notebook file;
    the tally under the table still counts every job."""
    shown = rows[:limit]
    html_rows = [[escape(r.job_id), _badge(r.state), escape(r.function),
                  text.seconds(r.duration), escape(r.parent or "")] for r in shown]
    plain = text.render_ls(rows).splitlines()
    more = []
    if len(rows) > limit:
        more = [f"... and {len(rows) - limit} more"]
        plain = plain[:2 + limit] + more + plain[-1:]
    html = (f"<div>{legend()}</div>"
            + html_table(["id", "state", "function", "duration", "parent"], html_rows)
            + "".join(f"<div>{escape(line)}</div>" for line in [*more, plain[-1]]))
    return View("\n".join(plain), html)


def details_view(d: Any) -> View:
    fields = [("state", _badge(d.state)), ("function", escape(d.function))]
    if d.parent:
        fields.append(("parent", escape(d.parent)))
    if d.children:
        fields.append(("children", escape(", ".join(d.children))))
    fields += [("depends on", escape(", ".join(d.dependencies) or "-")),
               ("needed by", escape(", ".join(d.dependents) or "-")),
               ("why", escape("; ".join(d.why) or "up to date"))]
    files: list[tuple[str, str]] = []
    for label, value in text.file_lines(d):
        if label or not files:
            files.append((label, escape(value)))
        else:
            files[-1] = (files[-1][0], files[-1][1] + "<br>" + escape(value))
    fields += files
    fields += [(label, escape(value)) for label, value in text.options_lines(d)]
    if d.started:
        fields.append(("last run", f"{text.when(d.started)}, {text.seconds(d.duration)}"
                                   f"{escape(text.memory_note(d.peak_rss))}"
                                   f" on {escape(d.engine or 'kernel')}"))
    attempts = text.attempt_lines(d)
    if attempts:
        fields.append(("attempts", "<br>".join(escape(line) for line in attempts)))
    if d.error:
        fields.append(("error", f'<b style="color:{COLOURS["failed"]}">{escape(d.error)}</b>'))
    if d.blocked_by:
        fields.append(("blocked by", escape(d.blocked_by)))
    html = f"<div><b>{escape(d.job_id)}</b></div>" + html_table(
        None, [[f"<b>{escape(k)}</b>", v] for k, v in fields])
    for title, body in (("traceback", d.traceback), ("stdout", d.stdout), ("stderr", d.stderr)):
        if body:
            html += f"<details open><summary>{title}</summary><pre>{escape(body)}</pre></details>"
    return View(text.render_details(d), html)


def stats_view(stats: dict) -> View:
    rows = [[escape(fn), str(sum(c.values()))] + [str(c.get(s, "") or "") for s in STATES]
            for fn, c in sorted(stats["by_function"].items())]
    totals = ", ".join(f"{n} {_badge(s)}" for s, n in stats["by_state"].items() if n)
    html = f"<div>{totals}</div>" + html_table(["function", "jobs", *STATES], rows)
    return View(text.render_stats(stats), html)


def why_view(job_id: str, reasons: list[str]) -> View:
    plain = text.render_why(job_id, reasons)
    items = "".join(f"<li>{escape(r)}</li>" for r in reasons)
    html = (f"<div><b>{escape(job_id)}</b> is up to date</div>" if not reasons else
            f"<div><b>{escape(job_id)}</b> is not up to date:<ul>{items}</ul></div>")
    return View(plain, html)


_COUNT = re.compile(r"\b(\d+) (done|failed|blocked|restored)\b")


def summary_view(line: str) -> View:
    """The line a make ends with (``make: 3 done, 1 failed, 8 up to date in 0.20s``),
    its counts in the state colours."""
    def coloured(m: re.Match) -> str:
        state = m.group(2)
        colour = COLOURS.get(state, COLOURS["done"]) if m.group(1) != "0" else "inherit"
        return f'<b style="color:{colour}">{m.group(0)}</b>'

    html = _COUNT.sub(coloured, escape(line))
    return View(line, f'<div style="font-family:monospace">{html}</div>')


def for_command(name: str, result: Any, args: Any) -> View | None:
    if name == "ls":
        return ls_view(result)
    if name == "details":
        return details_view(result)
    if name == "stats":
        return stats_view(result)
    if name == "why":
        return why_view(args.job, result)
    if name == "clean":
        line = text.render_cleaned(result)
        return View(line, escape(line))
    return None  # make and remake print their summary line


# -- the job board's fallback ------------------------------------------------------------

_OUTCOME = {"finished": "finished", "failed": "finished with failures",
            "interrupted": "interrupted", "error": "stopped by an error"}
BOARD_PROBLEMS_SHOWN = 50
BOARD_TRACEBACKS_SHOWN = 3
BOARD_JOBS_LISTED_UP_TO = 200   # a static board this small lists every job with its state


def board_headline(board: Any) -> str:
    """``job board (make, finished in 1.20s): 12 jobs: 10 done, 1 failed, 1 blocked``."""
    counts = board.counts()
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"
    run = board.run
    what = ""
    if run.command:
        elapsed = text.seconds(max(0.0, (run.ended or run.started) - run.started)) \
            if run.started else ""
        if run.active:
            what = f" ({run.command}, running)"
        else:
            what = f" ({run.command}, {_OUTCOME.get(run.outcome, 'ended')} in {elapsed})"
    return f"job board{what}: {len(board.jobs)} jobs: {tally}"


def _problem_rows(board: Any) -> tuple[list[Any], int]:
    problems = board.problems()
    return problems[:BOARD_PROBLEMS_SHOWN], max(0, len(problems) - BOARD_PROBLEMS_SHOWN)


def _problem_text(board: Any, job: Any) -> str:
    if job.state == "blocked":
        by = board.blocker(job)
        return f"blocked by {by}" if by else "blocked by a failed job"
    return job.x.get("err") or "failed"


def board_text(board: Any) -> str:
    """The plain-text fallback (and the console's ``show``): the headline; once the command
    ended, the failed and blocked jobs and the counts per function."""
    lines = [board_headline(board)]
    if board.run.active:
        return lines[0]
    if board.run.summary:
        lines.append(f"  ({board.run.summary})")
    shown, more = _problem_rows(board)
    if shown:
        lines += ["", text.table(["state", "job", "function", "problem"],
                                 [(j.state, j.job_id, j.function, _problem_text(board, j))
                                  for j in shown])]
        if more:
            lines.append(f"... and {more} more")
    if len(board.jobs) <= BOARD_JOBS_LISTED_UP_TO:
        lines += ["", *_job_lines(board)]
        return "\n".join(lines)
    by_function = board.by_function()
    if by_function:
        rows = [[fn, sum(c.values())] + [c.get(s, 0) or "" for s in STATES]
                for fn, c in sorted(by_function.items())]
        lines += ["", text.table(["function", "jobs", *STATES], rows)]
    failed = [j.job_id for j in board.jobs.values() if j.state == "failed"]
    if failed:
        lines += ["", *textwrap.wrap(f"failed ({len(failed)}): {' '.join(failed)}", 100,
                                     subsequent_indent="  ", break_on_hyphens=False)]
    return "\n".join(lines)


def _by_function_and_state(board: Any) -> dict[str, dict[str, list[Any]]]:
    """Jobs per function (in board order), then per state (in the order of STATES)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for job in board.jobs.values():
        out.setdefault(job.function, {}).setdefault(job.state, []).append(job)
    return {fn: {s: per[s] for s in STATES if s in per} for fn, per in out.items()}


def _job_lines(board: Any) -> list[str]:
    """Every job with its state, a line (wrapped) per function:
    ``fit (5): done fit-0 fit-1 fit-2 fit-4 · failed fit-3``."""
    lines = []
    for fn, per in _by_function_and_state(board).items():
        total = sum(len(jobs) for jobs in per.values())
        groups = " · ".join(f"{state} {' '.join(j.job_id for j in jobs)}"
                            for state, jobs in per.items())
        lines += textwrap.wrap(f"{fn} ({total}): {groups}", 100, subsequent_indent="  ",
                               break_on_hyphens=False, break_long_words=False)
    return lines


def _bar(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    parts = "".join(
        f'<span title="{n} {s}" style="display:inline-block;height:100%;'
        f'width:{100 * n / total:.3f}%;background:{COLOURS[s]}"></span>'
        for s, n in counts.items() if n)
    return (f'<div style="height:8px;width:100%;max-width:640px;background:#eee;'
            f'border-radius:4px;overflow:hidden;white-space:nowrap;line-height:0;margin:4px 0">'
            f'{parts}</div>')


def board_html(board: Any) -> str:
    """The HTML fallback: what nbconvert output, static exports and GitHub show."""
    counts = board.counts()
    head = escape(board_headline(board))
    chips = " ".join(f"{_badge(s)}&nbsp;<b>{n}</b>" for s, n in counts.items())
    parts = [f"<div><b>{head}</b></div>", f"<div>{chips}</div>", _bar(counts)]
    if board.run.summary and not board.run.active:
        parts.append(f'<div style="font-family:monospace">{escape(board.run.summary)}</div>')
    if not board.run.active:
        shown, more = _problem_rows(board)
        if shown:
            rows = [[_badge(j.state), escape(j.job_id), escape(j.function),
                     escape(_problem_text(board, j))] for j in shown]
            if more:
                rows.append(["", f"... and {more} more", "", ""])
            parts.append(html_table(["state", "job", "function", "problem"], rows))
        failed = [j for j in shown if j.state == "failed" and j.x.get("tb")]
        for j in failed[:BOARD_TRACEBACKS_SHOWN]:
            tb = "\n".join(j.x["tb"].rstrip("\n").splitlines()[-25:])
            parts.append(f"<details><summary>traceback of {escape(j.job_id)}</summary>"
                         f"<pre style=\"font-size:11px\">{escape(tb)}</pre></details>")
        if len(board.jobs) <= BOARD_JOBS_LISTED_UP_TO:
            parts.append(_job_grid(board))
        else:
            by_function = board.by_function()
            if by_function:
                rows = [[escape(fn), str(sum(c.values()))]
                        + [str(c.get(s, "") or "") for s in STATES]
                        for fn, c in sorted(by_function.items())]
                parts.append(html_table(["function", "jobs", *STATES], rows))
            failed = [j for j in board.jobs.values() if j.state == "failed"]
            if failed:
                parts.append(f'<div {_CHIPS}>{_badge("failed")} <b>{len(failed)}</b>: '
                             + " ".join(_job_chip(board, j) for j in failed) + "</div>")
    return '<div style="font-family:sans-serif;font-size:13px">' + "".join(parts) + "</div>"


def _job_chip(board: Any, job: Any) -> str:
    """One job of the static board: its id on its state's colour (a failed or blocked one
    says why in its title); ``data-*`` as on the live board. Kept short: a notebook saves
    up to BOARD_JOBS_LISTED_UP_TO of them per board."""
    colour = COLOURS.get(job.state, "#ccc")
    fg = "#fff" if job.state in ("done", "failed", "blocked") else "#222"
    title = ""
    if job.state in ("failed", "blocked"):
        title = f' title="{escape(f"{job.job_id}: {_problem_text(board, job)}")}"'
    parent = f' data-parent="{escape(job.parent)}"' if job.parent else ""
    return (f'<span data-job-id="{escape(job.job_id)}" data-state="{job.state}"{parent}'
            f'{title} style="background:{colour};color:{fg};padding:0 3px;'
            f'border-radius:3px">{escape(job.job_id)}</span>')


_CHIPS = 'style="font-family:monospace;font-size:11px;line-height:19px"'


def _job_grid(board: Any) -> str:
    """Every job, per function, then per state: readable in colour and without."""
    rows = []
    for fn, per in _by_function_and_state(board).items():
        total = sum(len(jobs) for jobs in per.values())
        groups = " ".join(
            f'<span style="font-family:sans-serif;color:#666">{escape(state)}</span> '
            + " ".join(_job_chip(board, j) for j in jobs) for state, jobs in per.items())
        rows.append(f'<div {_CHIPS}><b style="font-family:sans-serif">{escape(fn)}</b> '
                    f'<span style="font-family:sans-serif;color:#666">({total})</span> '
                    f'{groups}</div>')
    return '<div data-role="static-jobs" style="margin-top:4px">' + "".join(rows) + "</div>"


def board_host(uid: str, html: str) -> str:
    """The static board of the widget ``uid``, in the element the live page mounts the
    interactive board in (``js/src/mount.js``)."""
    return (f'<div class="nbmake-board" data-nbmake-board="{escape(uid)}">'
            f'<div class="nbmake-static">{html}</div></div>')


def board_view(board: Any) -> View:
    return View(board_text(board), board_html(board))
