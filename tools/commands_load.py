"""`twinbook loadgen` (load against a running node) and `twinbook bench e2e`.

`loadgen` drives a node that is already running: N pipelined clients at a target rate
(or unthrottled with --rate 0) for a number of seconds, then prints the achieved
throughput and an HDR-style table of ack latencies (or one JSON object with --json).
Note that a node's default per-session rate limit (20,000 msgs/s, burst 40,000) throttles
a single client above that; raise [limits] in the node's config for big runs.

`bench e2e` starts its own primary and sync standby (durability `always`, limits raised)
in a temporary directory, runs one phase per offered rate against them, stops them with
SIGTERM, and prints the figures; see tools/bench_e2e.py.
"""

from __future__ import annotations

import json

import click


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(part.strip() for part in text.split(",") if part.strip())
    if not symbols:
        raise click.BadParameter("give at least one symbol")
    return symbols


@click.command()
@click.option("--endpoint", default="127.0.0.1:7701", show_default=True, help="The node's client port HOST:PORT.")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 1000))
@click.option("--rate", default=10_000.0, show_default=True, type=click.FloatRange(0), help="Orders per second, all clients together; 0: as fast as possible.")
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600))
@click.option("--symbols", default="AAPL,MSFT", show_default=True, help="Comma-separated symbols to trade.")
@click.option("--members", default="M1,M2,M3", show_default=True, help="Members the clients log on as, round robin.")
@click.option("--token", "tokens", multiple=True, help="MEMBER=TOKEN (default: demo-MEMBER); repeat per member.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="The node's TOML config, for the instruments' reference prices (default: the demo instruments).")
@click.option("--in-flight", "in_flight_max", default=1000, show_default=True, type=click.IntRange(1, 1_000_000), help="Unanswered requests allowed per client.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of the figures.")
def loadgen(endpoint, clients, rate, seconds, symbols, members, tokens, config_path, in_flight_max, seed, as_json) -> None:
    """Send a paced, pipelined order load to a node; report throughput and ack latency."""
    from replica.config import load_config
    from tools.loadgen import LoadParams, format_report, reference_prices_from_config, run_async, run_load

    token_map = {}
    for item in tokens:
        member, separator, token = item.partition("=")
        if not separator or not member:
            raise click.BadParameter(f"{item!r} is not MEMBER=TOKEN", param_hint="--token")
        token_map[member] = token
    params = LoadParams(
        _endpoint(endpoint), clients=clients, rate=rate, seconds=seconds, symbols=_symbols(symbols),
        members=_symbols(members), tokens=token_map or None, in_flight_max=in_flight_max, seed=seed,
        reference_prices=reference_prices_from_config(load_config(config_path)),
    )
    try:
        result = run_async(run_load(params))
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if as_json:
        figures = result.figures()
        figures["ack_latency_ns"] = result.percentiles()
        click.echo(json.dumps(figures, sort_keys=True))
    else:
        click.echo(format_report(result), nl=False)


def _rates(text: str) -> tuple[float, ...]:
    rates = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            rate = 0.0 if part == "max" else float(part)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a rate (orders/s) or max") from None
        if rate < 0:
            raise click.BadParameter(f"{part!r}: a rate is >= 0")
        rates.append(rate)
    if not rates:
        raise click.BadParameter("give at least one rate")
    return tuple(rates)


@click.command(name="e2e")
@click.option("--standby", default="sync", show_default=True, type=click.Choice(["sync", "none"]), help="sync: a standby attached in sync replication (the target); none: the primary alone.")
@click.option("--rates", default="10000,50000,max", show_default=True, help="Offered orders/s of the phases, comma-separated; max: as fast as the windows allow.")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(0.5, 600), help="Length of each phase.")
@click.option("--symbols", default="AAPL,MSFT", show_default=True)
@click.option("--durability", default="always", show_default=True, type=click.Choice(["always", "interval", "none"]))
@click.option("--in-flight", "in_flight_max", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the nodes' temporary data (default: the system temp dir).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--tls/--no-tls", default=True, show_default=True, help="TLS on every port, the members' gateway included (--no-tls: plain TCP, to measure the cost).")
@click.option("--sender-only", is_flag=True, help="Measure the load generator alone (unpaced, against a sink process that answers nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of the figures.")
@click.option("--results", type=click.Path(dir_okay=False), help="Append the JSON figures to this JSON-lines file.")
def bench_e2e_command(standby, rates, clients, seconds, symbols, durability, in_flight_max,
                      workdir, seed, tls, sender_only, as_json, results) -> None:
    """End to end on loopback: loadgen -> primary -> sync standby, fsync on both -> ack."""
    from tools.bench_e2e import render_e2e, run_e2e_benchmark, run_sender_benchmark
    from tools.commands_bench import _emit

    if sender_only:
        _emit(run_sender_benchmark(clients=clients, seconds=seconds, seed=seed), as_json, results)
        return
    figures = run_e2e_benchmark(
        clients=clients, seconds=seconds, rates=_rates(rates), standby=standby,
        symbols=_symbols(symbols), durability=durability, workdir=workdir,
        in_flight_max=in_flight_max, seed=seed, tls=tls,
    )
    _emit(figures, as_json, results, render=render_e2e)
