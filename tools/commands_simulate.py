"""`twinbook simulate`: run the deterministic cluster simulator for one seed or a sweep.

    twinbook simulate --seed 17 [--steps 20000] [--fault-rate 1.0] [--keep DIR] [--trace]
    twinbook simulate --seeds 1..500 [--steps 20000] [--json]

A failing seed prints its violations and the last events of its trace; the same seed
with the same steps and fault rate replays exactly (the trace digest says so). Exit
status 0 when every seed kept every property, 1 when one did not.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import click

from replica.simulation import SimulationError, run_seed

SEEDS_PER_SWEEP_MAX = 1_000_000


def _parse_seeds(text: str) -> range:
    first, separator, last = text.partition("..")
    try:
        low, high = int(first), int(last)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not A..B (two integers)", param_hint="--seeds") from None
    if not separator or low > high or high - low + 1 > SEEDS_PER_SWEEP_MAX or low < 0:
        raise click.BadParameter(f"{text!r}: want 0 <= A <= B, at most {SEEDS_PER_SWEEP_MAX} seeds", param_hint="--seeds")
    return range(low, high + 1)


@click.command()
@click.option("--seed", type=click.IntRange(min=0), help="One seed to run.")
@click.option("--seeds", "seeds_text", metavar="A..B", help="A sweep of seeds, both ends included.")
@click.option("--steps", type=click.IntRange(1, 100_000_000), default=20_000, show_default=True,
              help="Simulated events before the faults stop and the cluster must heal.")
@click.option("--fault-rate", type=click.FloatRange(0.0, 10.0), default=1.0, show_default=True,
              help="Faults per 300 ms of simulated time, on average.")
@click.option("--keep", "keep_directory", type=click.Path(file_okay=False),
              help="Keep the nodes' data directories here (one seed only), for `twinbook journal inspect`.")
@click.option("--trace", "show_trace", is_flag=True, help="Print the last events of the trace even when the seed passes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per seed.")
def simulate(seed, seeds_text, steps, fault_rate, keep_directory, show_trace, as_json) -> None:
    """Simulate a primary, a standby, a watchdog and clients under faults, from a seed."""
    if (seed is None) == (seeds_text is None):
        raise click.UsageError("give exactly one of --seed N or --seeds A..B")
    seeds = range(seed, seed + 1) if seed is not None else _parse_seeds(seeds_text)
    if keep_directory and len(seeds) != 1:
        raise click.UsageError("--keep works with one --seed")
    failed = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="twinbook-simulate-") as scratch:
        for current in seeds:
            try:
                result = run_seed(current, steps, keep_directory or scratch, fault_rate=fault_rate,
                                  keep=bool(keep_directory))
            except SimulationError as error:
                click.echo(f"seed {current}: simulator error: {error}", err=True)
                failed.append(current)
                continue
            if not result.ok:
                failed.append(current)
            if as_json:
                click.echo(json.dumps({
                    "seed": current, "ok": result.ok, "steps": result.steps, "fault_rate": fault_rate,
                    "simulated_ms": result.simulated_ms, "trace_digest": result.trace_digest,
                    "violations": result.violations, "statistics": result.statistics,
                }, sort_keys=True))
            elif not result.ok or len(seeds) == 1:
                click.echo(result.describe())
                if show_trace and result.ok:
                    click.echo("\n".join(f"    {line}" for line in result.trace_tail))
                if len(seeds) == 1:
                    click.echo(json.dumps(result.statistics, sort_keys=True))
    if len(seeds) > 1 and not as_json:
        click.echo(f"{len(seeds) - len(failed)}/{len(seeds)} seeds kept every property "
                   f"({steps} steps each, fault rate {fault_rate}, {time.monotonic() - started:.0f} s)")
        if failed:
            click.echo(f"failing seeds: {' '.join(map(str, failed[:50]))}; replay one with "
                       f"`twinbook simulate --seed {failed[0]} --steps {steps}`")
    sys.exit(1 if failed else 0)
