"""The benchmark harness (issue 9): every scenario, or one, against a real `ce-gateway serve`.

    .venv/bin/python bench/run.py                       # all scenarios (what `make bench` runs)
    .venv/bin/python bench/run.py --scenario push       # one scenario (repeatable)
    .venv/bin/python bench/run.py --engine uvicorn      # another server engine (skipped, with a
                                                        # message, if the gateway refuses it)
    .venv/bin/python bench/run.py --gateway-tree HEAD   # bench a commit's gateway/, not the
                                                        # work tree others may be editing

Scenarios: publish-single, ceiling, publish-batch, nats, push, e2e, backlog, profile.
Load comes from wrk (`bench/wrk.lua`, one thread) or from `bench/loads.py` in its own process;
the generator's own CPU is recorded (wrk: wait4 rusage; Python generators: their process time
during the loop). Everything listens on 127.0.0.1 only, every load is bounded in count and in
time. Figures are merged into `bench/results.json` (per engine and scenario, so one scenario can
be re-run alone), `bench/results.png` (`results-ENGINE.png` for another engine) is drawn from it
(`bench/chart.py`), and the targets of issue 9 are checked on what the file holds.
"""

# Layout: the CLI here; each scenario a function in scenarios.py, on the Rig of rig.py (gateways,
# loads, --gateway-tree); figure helpers in figures.py; the targets as a table in targets.py.

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness as h
from figures import summary_line
from rig import Rig, Skip, gateway_source
from scenarios import SCENARIOS
from targets import print_targets, targets

RESULTS = h.BENCH / "results.json"
CHART = h.BENCH / "results.png"


def load_results() -> dict[str, Any]:
    if RESULTS.exists():
        loaded: dict[str, Any] = json.loads(RESULTS.read_text())
        return loaded
    return {}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="default: all")
    parser.add_argument("--engine", default="hypercorn", choices=["hypercorn", "uvicorn"])
    parser.add_argument(
        "--rounds", type=int, default=3, help="publish, ceiling and NATS loads: median of N"
    )
    parser.add_argument("--single-count", type=int, default=20_000)
    parser.add_argument("--batch-requests", type=int, default=1_000, help="of 100 events each")
    parser.add_argument("--nats-count", type=int, default=20_000)
    parser.add_argument("--push-events", type=int, default=20_000)
    parser.add_argument("--push-seconds", type=float, default=60.0)
    parser.add_argument("--sink-count", type=int, default=50_000)
    parser.add_argument("--e2e-samples", type=int, default=200)
    parser.add_argument("--e2e-probe", type=int, default=10_000)
    parser.add_argument("--e2e-seconds", type=float, default=10.0)
    parser.add_argument(
        "--backlog-sizes",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1_000, 100_000, 1_000_000],
    )
    parser.add_argument("--seed-seconds", type=float, default=240.0)
    parser.add_argument("--profile-seconds", type=float, default=6.0)
    parser.add_argument("--profile-push-events", type=int, default=40_000)
    parser.add_argument(
        "--gateway-tree",
        default="worktree",
        help="worktree (default: the gateway/ package as it is on disk), or a git revision such "
        "as HEAD to bench that commit's gateway/ (exported read-only with git archive), e.g. "
        "while others are editing the work tree",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--no-chart", action="store_true")
    return parser.parse_args()


def main() -> int:
    options = parse_args()
    h.ensure_wrk()
    results = load_results()
    workdir = Path(tempfile.mkdtemp(prefix="cegw-bench-"))
    try:
        failures = run_scenarios(options, results, workdir)
    finally:
        if options.keep:
            h.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failures is None:
        return 0
    print_targets(targets(results, options.engine))
    if not options.no_chart:
        draw_chart(results, options.engine)
    return 1 if failures else 0


def run_scenarios(
    options: argparse.Namespace, results: dict[str, Any], workdir: Path
) -> int | None:
    """Each chosen scenario in turn, its figures written to results.json as soon as it is done.
    Returns how many failed, or None when the engine itself cannot run (nothing else can)."""
    run = results.setdefault(options.engine, {})
    rig = Rig(options, workdir)
    machine = {**h.machine(), "gateway": gateway_source(options.gateway_tree, workdir)}
    h.log(f"machine: {machine}; engine {options.engine}; work dir {workdir}")
    failures = 0
    for name in options.scenario or list(SCENARIOS):
        load_before = h.load_average()
        h.log(f"== {name} (load average {load_before})")
        started = time.perf_counter()
        try:
            figures = SCENARIOS[name](rig)
        except Skip as skip:
            h.log(f"   skipped: {skip}")
            if name in ("publish-single", "ceiling") or options.engine != "hypercorn":
                # The engine itself is refused or not wired in: nothing else can run.
                print(f"SKIPPED engine {options.engine}: {skip}")
                return None
            continue
        except Exception as error:
            failures += 1
            h.log(f"   FAILED: {error.__class__.__name__}: {error}")
            continue
        figures["load_average_before"] = load_before
        figures["load_average_after"] = h.load_average()
        figures["when"] = datetime.datetime.now().isoformat(timespec="seconds")
        figures["machine"] = machine
        figures["wall_seconds"] = time.perf_counter() - started
        run[name] = figures
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        h.log(f"   {summary_line(name, figures)} ({figures['wall_seconds']:.0f} s)")
    return failures


def draw_chart(results: dict[str, Any], engine: str) -> None:
    import chart

    path = CHART if engine == "hypercorn" else CHART.with_stem(f"results-{engine}")
    chart.draw(results, engine, path)
    h.log(f"chart: {path}")


if __name__ == "__main__":
    sys.exit(main())
