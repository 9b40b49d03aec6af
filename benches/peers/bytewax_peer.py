#!/usr/bin/env python3
"""Peer comparison: the S2 (count by key) and S3 (1 s tumbling event-time window count by
key) workloads on Bytewax, beside this engine's harness, with the ratios.

Usage (from the repository root):

    python3 benches/peers/bytewax_peer.py [--events 2000000] [--window-events 20000]

It installs Bytewax 0.21 from PyPI into a virtualenv under benches/peers/.cache/ (first run
only), runs both Bytewax dataflows in that venv, then runs the release build of the
`throughput` harness for S2m, S2 and S3 (CARGO_TARGET_DIR is honoured) and prints records/s
of each and the ratios the targets are stated in:

    S2m (in-memory count) / Bytewax count          target >= 20
    S2  (RocksDB count)   / Bytewax count          target >= 2
    S3  (window count)    / Bytewax window count   target >= 20

If Bytewax cannot be installed (no network, no wheel for this Python), it says so clearly,
still prints the engine's figures, and exits with status 3.

The workload is the harness's: keys `user-%08d` drawn uniformly from --keys ids by the same
SplitMix64 generator and seed, values 0..100, event timestamps 1 ms apart.
"""

import argparse
import csv
import io
import os
import subprocess
import sys
import time
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.path.join(HERE, ".cache")
VENV = os.path.join(CACHE, "venv")
BYTEWAX = "bytewax==0.21.1"
BASE_TIMESTAMP = 1_700_000_000_000
MASK = (1 << 64) - 1


def splitmix(seed):
    """The harness's generator (benches/src/workload.rs), bit for bit."""
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def events(n, keys, seed):
    rng = splitmix(seed)
    out = []
    for i in range(n):
        r = next(rng)
        out.append((f"user-{r % keys:08d}", (r >> 40) % 100, BASE_TIMESTAMP + i))
    return out


# ---------------------------------------------------------------------------------------
# Inside the venv: the Bytewax dataflows.


def worker(args):
    from datetime import datetime, timedelta, timezone

    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    def count_flow(items, out):
        flow = Dataflow("count")
        s = op.input("in", flow, TestingSource(items, batch_size=1000))
        counts = op.count_final("count", s, lambda e: e[0])
        op.output("out", counts, TestingSink(out))
        return flow

    def window_flow(items, out):
        flow = Dataflow("window_count")
        s = op.input("in", flow, TestingSource(items, batch_size=1000))
        clock = win.EventClock(
            lambda e: datetime.fromtimestamp(e[2] / 1000, tz=timezone.utc),
            # Event time runs 1 ms per record, far faster than the wall clock: with a short
            # wait, Bytewax's watermark (max event time + wall time since) passes records still
            # to come and drops them as late. A day's wait closes windows only at end of input.
            wait_for_system_duration=timedelta(days=1),
        )
        windower = win.TumblingWindower(
            length=timedelta(seconds=1), align_to=datetime(2023, 1, 1, tzinfo=timezone.utc)
        )
        counts = win.count_window("count", s, clock, windower, lambda e: e[0])
        op.output("out", counts.down, TestingSink(out))
        return flow

    results = {}
    for name, flow_of, n in (
        ("count", count_flow, args.events),
        ("window_count", window_flow, args.window_events),
    ):
        items = events(n, args.keys, args.seed)
        out = []
        flow = flow_of(items, out)
        start = time.perf_counter()
        run_main(flow)
        elapsed = time.perf_counter() - start
        total = sum(c if isinstance(c, int) else c[1] for _, c in out)
        if total != n:
            sys.exit(f"bytewax {name}: counts add up to {total}, expected {n}")
        results[name] = n / elapsed
        print(f"RESULT {name} {n} {n / elapsed:.1f}", flush=True)
    return results


# ---------------------------------------------------------------------------------------
# Outside: install, run, compare.


def venv_python():
    return os.path.join(VENV, "bin", "python")


def ensure_bytewax():
    """Returns None when Bytewax is importable in the venv, else why not."""
    py = venv_python()
    if not os.path.exists(py):
        os.makedirs(CACHE, exist_ok=True)
        try:
            venv.create(VENV, with_pip=True)
        except Exception as e:  # noqa: BLE001 - any failure is reported the same way
            return f"could not create a virtualenv in {VENV}: {e}"
    check = subprocess.run([py, "-c", "import bytewax"], capture_output=True)
    if check.returncode == 0:
        return None
    print(f"installing {BYTEWAX} into {VENV} ...", file=sys.stderr, flush=True)
    pip = subprocess.run(
        [py, "-m", "pip", "install", "--quiet", BYTEWAX], capture_output=True, text=True
    )
    if pip.returncode != 0:
        tail = "\n".join((pip.stderr or pip.stdout).strip().splitlines()[-5:])
        return f"pip install {BYTEWAX} failed:\n{tail}"
    return None


def run_bytewax(args):
    cmd = [
        venv_python(),
        os.path.abspath(__file__),
        "--worker",
        "--events",
        str(args.events),
        "--window-events",
        str(args.window_events),
        "--keys",
        str(args.keys),
        "--seed",
        str(args.seed),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, f"the Bytewax run failed:\n{p.stderr.strip()[-2000:]}"
    rates = {}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            _, name, _n, rate = line.split()
            rates[name] = float(rate)
    return rates, None


def run_engine(args):
    """Runs the harness for S2m, S2 and S3; returns {scenario: engine records/s}."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    cmd = [
        "cargo", "run", "--quiet", "--release", "-p", "streams-benches", "--bin", "throughput",
        "--", "--format", "csv", "--scenarios", "S2m,S2,S3",
        "--events", str(args.events), "--keys", str(args.keys), "--seed", str(args.seed),
    ]
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    sys.stderr.write(p.stderr)
    rates = {}
    for row in csv.DictReader(io.StringIO(p.stdout)):
        rates[row["scenario"]] = float(row["engine records/s"])
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="events of the count runs")
    ap.add_argument(
        "--window-events", type=int, default=20_000,
        help="events of the Bytewax window run (it is slow: 200,000 took over 10 minutes here; rates are per record anyway)",
    )
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-engine", action="store_true", help="only run Bytewax")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0

    problem = ensure_bytewax()
    bw = {}
    if problem is None:
        bw, problem = run_bytewax(args)
        bw = bw or {}
    if problem is not None:
        print("=" * 72)
        print("BYTEWAX IS NOT AVAILABLE: no peer figures in this run.")
        print(problem)
        print("=" * 72, flush=True)
    ours = {} if args.skip_engine else run_engine(args)

    print(f"{'workload':<32} {'records/s':>12}")
    for name, rate in (
        ("bytewax count (in memory)", bw.get("count")),
        ("bytewax 1 s window count", bw.get("window_count")),
        ("engine S2m (in-memory count)", ours.get("S2m")),
        ("engine S2 (RocksDB count)", ours.get("S2")),
        ("engine S3 (window count)", ours.get("S3")),
    ):
        print(f"{name:<32} {rate:>12.0f}" if rate else f"{name:<32} {'n/a':>12}")
    print()
    for label, a, b, target in (
        ("S2m / bytewax count", ours.get("S2m"), bw.get("count"), 20),
        ("S2 / bytewax count", ours.get("S2"), bw.get("count"), 2),
        ("S3 / bytewax window count", ours.get("S3"), bw.get("window_count"), 20),
    ):
        if a and b:
            ok = "met" if a / b >= target else "NOT met"
            print(f"{label:<32} {a / b:>8.1f}x  (target >= {target}x: {ok})")
        else:
            print(f"{label:<32} {'n/a':>9}")
    return 3 if problem is not None else 0


if __name__ == "__main__":
    sys.exit(main())
