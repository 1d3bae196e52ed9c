"""A small analysis run through nbmake_ext's Python API.

Twelve sensors: load each one's readings, drop outliers, fit a line. One sensor's data is
broken on purpose, so its fit fails and the report that needs it is blocked while every
other job still runs. A dynamic job then defines one summary job per site. We fix the fit
and make again: only what the fix touches runs.

    python notebooks/demo.py [--store DIR]

Run it twice: the second run finds everything up to date and runs nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import tempfile

from nbmake_ext import Context, File, JobsFailed

SENSORS = range(12)
SITES = {"north": [0, 1, 2, 3], "south": [4, 5, 6, 7], "east": [8, 9, 10, 11]}
BROKEN = 7


def load(sensor: int) -> list[tuple[float, float]]:
    """Readings (time, value) of one sensor: a noisy line, a few spikes."""
    rng = random.Random(sensor)
    slope, offset = 0.5 + sensor / 10, rng.uniform(-1, 1)
    points = [(t, offset + slope * t + rng.gauss(0, 0.3)) for t in range(200)]
    if sensor == BROKEN:
        points = [(t, math.nan) for t, _ in points]  # a dead sensor
    for t in rng.sample(range(200), 5):
        points[t] = (t, points[t][1] + 40)
    return points


def drop_outliers(points: list[tuple[float, float]], k: float = 3.0) -> list[tuple[float, float]]:
    values = [v for _, v in points]
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values) or 1.0
    return [(t, v) for t, v in points if abs(v - med) <= k * 1.4826 * mad * 10]


def fit(points: list[tuple[float, float]]) -> dict[str, float]:
    """Least-squares line through the points."""
    ts = [t for t, _ in points]
    vs = [v for _, v in points]
    if any(math.isnan(v) for v in vs):
        raise ValueError(f"{sum(math.isnan(v) for v in vs)} readings are NaN")
    slope, intercept = statistics.linear_regression(ts, vs)
    return {"slope": slope, "intercept": intercept, "n": len(points)}


def fit_robust(points: list[tuple[float, float]]) -> dict[str, float]:
    """The fix: ignore NaN readings, and report an empty fit when nothing is left."""
    good = [(t, v) for t, v in points if not math.isnan(v)]
    if len(good) < 2:
        return {"slope": math.nan, "intercept": math.nan, "n": 0}
    return fit(good)


def site_summary(site: str, fits: list[dict[str, float]]) -> str:
    slopes = [f["slope"] for f in fits if f["n"]]
    return f"{site}: {len(slopes)}/{len(fits)} sensors, mean slope {statistics.fmean(slopes):.3f}"


def summaries(context, fits_by_site: dict[str, list[dict]]) -> list:
    """A dynamic job: one summary job per site, defined while it runs."""
    return [context.comp(site_summary, site, fits) for site, fits in sorted(fits_by_site.items())]


def report(lines: list[str]) -> str:
    return "\n".join(lines)


COLOURS = {"north": "#1f77b4", "south": "#ff7f0e", "east": "#2ca02c"}


def read_labels(path: str) -> dict[str, str]:
    with open(path) as fh:
        return dict(line.strip().split(",") for line in list(fh)[1:])


def draw_slopes(labels: dict[str, str], fits: dict[int, dict], path: str) -> None:
    """An SVG bar chart of the slopes, one colour per site."""
    site_of = {s: site for site, sensors in SITES.items() for s in sensors}
    bars = [f'<rect x="{20 * s}" y="{100 - 40 * f["slope"]:.1f}" width="16" '
            f'height="{40 * f["slope"]:.1f}" fill="{COLOURS[site_of[s]]}"/>'
            for s, f in fits.items() if f["n"] and f["slope"] > 0]
    names = [f'<text x="{80 * k}" y="115" font-size="9">{labels[site]}</text>'
             for k, site in enumerate(SITES)]
    with open(path, "w") as fh:
        fh.write('<svg xmlns="http://www.w3.org/2000/svg" width="240" height="120">'
                 + "".join(bars + names) + "</svg>")


def define_files(ctx: Context, fitter) -> object:
    """A data file read, a figure written, a shell step on the figure."""
    os.makedirs("data", exist_ok=True)
    if not os.path.exists("data/sites.csv"):  # the data file, as another tool would export it
        with open("data/sites.csv", "w") as fh:
            fh.write("site,label\n" + "".join(f"{s},{s.title()} field\n" for s in SITES))
    fits = {s: ctx.comp(fitter if s == BROKEN else fit,
                        ctx.comp(drop_outliers, ctx.comp(load, s), k=3.0),
                        job_id=f"fit-sensor{s}") for s in SENSORS}
    labels = ctx.comp(read_labels, File("data/sites.csv"))
    figure = ctx.comp(draw_slopes, labels, fits, "figs/slopes.svg", job_id="figure",
                      job_outputs=["figs/slopes.svg"])
    return ctx.sh("grep -o '<rect' {input} | wc -l > {output}", inputs=figure.outputs,
                  outputs=["figs/bars.txt"], job_id="count-bars")


def define(ctx: Context, fitter) -> object:
    fits = {}
    for sensor in SENSORS:
        raw = ctx.comp(load, sensor)
        clean = ctx.comp(drop_outliers, raw, k=3.0)
        fn = fitter if sensor == BROKEN else fit
        fits[sensor] = ctx.comp(fn, clean, job_id=f"fit-sensor{sensor}")
    by_site = {site: [fits[s] for s in sensors] for site, sensors in SITES.items()}
    per_site = ctx.comp_dynamic(summaries, by_site, job_id="summaries")
    return ctx.comp(report, per_site, job_id="report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store directory (default: a fresh temporary one)")
    store = parser.parse_args().store or tempfile.mkdtemp(prefix="nbmake-demo-") + "/.nbmake"
    print(f"store: {store}")
    with Context(store) as ctx:
        print("\n# first make: the broken sensor fails, the report is blocked")
        define(ctx, fit)
        try:
            ctx.make()
        except JobsFailed as exc:
            print(f"JobsFailed: {exc}")
        print(ctx.details(f"fit-sensor{BROKEN}").error)
        print("blocked:", [r.job_id for r in ctx.ls("blocked")])

        print("\n# the fix: redefine the failing fit, make again")
        report_job = define(ctx, fit_robust)
        print("why:", ctx.why(f"fit-sensor{BROKEN}"))
        ctx.make()
        print(report_job.result())

        print("\n# nothing changed: nothing runs")
        ctx.make()
        stats = ctx.stats()
        print(f"{sum(stats['by_state'].values())} jobs:", stats["by_state"])

        print("\n# files: a data file read, a figure written, a shell step (in the store's folder)")
        os.chdir(os.path.dirname(os.path.abspath(store)))
        define_files(ctx, fit_robust)
        ctx.make("figs/bars.txt")
        print("bars drawn:", open("figs/bars.txt").read().strip(), "in figs/slopes.svg")


if __name__ == "__main__":
    main()
