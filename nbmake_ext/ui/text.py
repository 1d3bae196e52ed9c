"""Plain-text views of command results (the console, and the notebook's text fallback)."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Sequence

from ..core.options import JobOptions, describe
from ..core.states import STATES


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [["" if c is None else str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row).rstrip() for row in rows]
    return "\n".join(lines)


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.1f}ms"
    if value < 120:
        return f"{value:.2f}s"
    return f"{value / 60:.1f}min"


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return _dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


def render_ls(rows: list) -> str:
    if not rows:
        return "no jobs"
    counts = {s: 0 for s in STATES}
    for r in rows:
        counts[r.state] += 1
    body = table(["id", "state", "function", "duration", "parent"],
                 [(r.job_id, r.state, r.function, seconds(r.duration), r.parent or "")
                  for r in rows])
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    restorable = [r.job_id for r in rows if getattr(r, "restorable", False)]
    if restorable:
        tally += (f"; the next make restores {len(restorable)} of them, whose stored result "
                  f"matches again: {preview(restorable)}")
    return f"{body}\n{len(rows)} jobs: {tally}"


def preview(names: Sequence[str], n: int = 3) -> str:
    """The first ``n`` names, and how many more."""
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def render_why(job_id: str, reasons: list[str]) -> str:
    if not reasons:
        return f"{job_id} is up to date"
    return "\n".join([f"{job_id} is not up to date:"] + [f"  - {r}" for r in reasons])


def options_lines(d: Any) -> list[tuple[str, str]]:
    """(label, text) of each option of a job's ``details`` that is set."""
    given = getattr(d, "options", None) or {}
    return describe(JobOptions(given.get("timeout"), given.get("retries", 0),
                               given.get("resources") or {}))


def size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def memory_note(peak_rss: int | None) -> str:
    return f", peak memory {size(peak_rss)}" if peak_rss else ""


def attempt_lines(d: Any) -> list[str]:
    """One line per attempt of the job's last run, when it had more than one: the failed
    ones (job_retries), then the last."""
    earlier = getattr(d, "attempts", None) or []
    if not earlier:
        return []
    lines = [f"{a['attempt']}. {when(a['started']) if a.get('started') else '-'}, "
             f"{seconds(a.get('duration') or 0)} on {a.get('engine') or 'kernel'}: "
             f"{a.get('error') or 'failed'}" for a in earlier]
    last = d.error or "succeeded"
    lines.append(f"{len(earlier) + 1}. {when(d.started) if d.started else '-'}, "
                 f"{seconds(d.duration or 0)} on {d.engine or 'kernel'}: {last}")
    return lines


def file_lines(d: Any) -> list[tuple[str, str]]:
    """(label, text) of a job's files and command in ``details``, one file a line."""
    out = []
    for label, files in (("inputs", getattr(d, "input_files", None)),
                         ("outputs", getattr(d, "output_files", None))):
        for k, (path, status) in enumerate(files or ()):
            out.append((label if k == 0 else "", f"{path} ({status})"))
    command = getattr(d, "command", None)
    if command:
        out.append(("command", command))
    return out


def render_details(d: Any) -> str:
    lines = [
        f"job        {d.job_id}",
        f"state      {d.state}",
        f"function   {d.function}",
    ]
    if d.parent:
        lines.append(f"parent     {d.parent}")
    if d.children:
        lines.append(f"children   {', '.join(d.children)}")
    lines.append(f"depends on {', '.join(d.dependencies) or '-'}")
    lines.append(f"needed by  {', '.join(d.dependents) or '-'}")
    for label, value in file_lines(d):
        lines.append(f"{label:<10} {value}")
    for label, value in options_lines(d):
        lines.append(f"{label:<10} {value}")
    if d.started:
        lines.append(f"last run   {when(d.started)}, took {seconds(d.duration)}"
                     f" (cpu {seconds(d.cpu)}{memory_note(d.peak_rss)}) on {d.engine or 'kernel'}")
    for k, line in enumerate(attempt_lines(d)):
        lines.append(f"{'attempts' if k == 0 else '':<10} {line}")
    if d.reasons_last_run:
        lines.append(f"ran because {'; '.join(d.reasons_last_run)}")
    lines.append("why        " + ("; ".join(d.why) if d.why else "up to date"))
    if d.blocked_by:
        lines.append(f"blocked by {d.blocked_by}")
    if d.error:
        lines.append(f"error      {d.error}")
    for title, text in (("traceback", d.traceback), ("stdout", d.stdout), ("stderr", d.stderr)):
        if text:
            lines += [f"--- {title}", text.rstrip("\n")]
    return "\n".join(lines)


def render_stats(stats: dict) -> str:
    by_state = stats["by_state"]
    total = sum(by_state.values())
    if not total:
        return "no jobs"
    head = f"{total} jobs: " + ", ".join(f"{n} {s}" for s, n in by_state.items() if n)
    rows = []
    for fn, counts in sorted(stats["by_function"].items()):
        rows.append([fn, sum(counts.values())] + [counts.get(s, 0) or "" for s in STATES])
    return head + "\n" + table(["function", "jobs", *STATES], rows)


def render_cleaned(ids: list[str]) -> str:
    return f"cleaned {len(ids)} job{'s' if len(ids) != 1 else ''}"
