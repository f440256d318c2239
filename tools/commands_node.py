"""`twinbook primary`, `twinbook client ...`, `twinbook feed`, `twinbook hash-token`.

`primary` and `standby` take `--certs DIR` (a `twinbook certs init` directory) and
`--node-name NAME` (whose node-NAME.pem/.key it presents), overriding the config's [tls]
table; the admin clients (`promote`, `degrade`, `watchdog`) take `--certs DIR` and
`--identity` (operator, watchdog, node-a, ...), or `--no-tls` for a node run without TLS.

`primary` runs a node on embedded defaults (loopback ports 7701-7704, demo instruments
AAPL/MSFT/TSLA/BOND, demo members M1..M4 with tokens demo-M1..demo-M4) unless a TOML
config says otherwise; SIGTERM shuts it down gracefully. `client` places, cancels,
replaces and queries orders from the shell; `feed` shows a live view of one symbol's book
and trades; `hash-token` prints the token hash a config file stores instead of a token.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import click
import msgspec

from replica.config import hash_token, load_config
from replica.tls import default_certificates_directory
from tools import exit_codes
from tools.logs import node_log
from tools.exit_codes import one_line


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _run(coroutine):
    try:
        import uvloop  # noqa: F401 - optional, faster event loop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def _certificate_options(default_node: str):
    """--certs and --node-name of `primary` and `standby`."""
    def decorate(function):
        function = click.option("--node-name", help=f"This node's certificate in the certificates directory: "
                                                   f"node-NAME.pem/.key (default: the config's [tls] node, else {default_node}).")(function)
        return click.option("--certs", type=click.Path(file_okay=False),
                            help="A `twinbook certs init` directory (default: the config's [tls], else "
                                 "$TWINBOOK_CERTS, else ./twinbook-certs).")(function)
    return decorate


def _admin_credentials_options(default_identity: str):
    """--certs, --identity and --no-tls of the admin clients."""
    def decorate(function):
        function = click.option("--no-tls", is_flag=True, help="Plain TCP, for a node whose [tls] enabled = false.")(function)
        function = click.option("--identity", default=default_identity, show_default=True,
                                help="Whose certificate to present: operator, watchdog, node-a, ... "
                                     "(IDENTITY.pem/.key in the certificates directory).")(function)
        return click.option("--certs", type=click.Path(file_okay=False),
                            help="A `twinbook certs init` directory (default: $TWINBOOK_CERTS, else ./twinbook-certs).")(function)
    return decorate


def admin_credentials(certs: str | None, identity: str, no_tls: bool):
    """The ClientCredentials the admin options name (None with --no-tls)."""
    from replica.tls import ClientCredentials

    if no_tls:
        return None
    return ClientCredentials.load(certs or default_certificates_directory(), identity)


@click.command()
@click.option("--data", "data_root", required=True, type=click.Path(file_okay=False), help="The node's data directory.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TOML config (default: embedded demo config).")
@click.option("--port-base", type=click.IntRange(0, 65532), help="Use ports PORT..PORT+3 for client, feed, replication, admin.")
@click.option("--durability", type=click.Choice(["always", "interval", "none"]), help="Override the config's durability policy.")
@click.option("--replication", type=click.Choice(["sync", "async"]), help="Override the config's replication mode.")
@_certificate_options("a")
def primary(data_root: str, config_path: str | None, port_base: int | None, durability: str | None, replication: str | None,
            certs: str | None, node_name: str | None) -> None:
    """Run a primary node until SIGTERM."""
    from replica.primary_node import run_primary

    config = _node_config(config_path, port_base, durability, replication, certs, node_name)
    sys.exit(_run(run_primary(config, data_root, log=node_log("primary"))) or 0)


def _node_config(config_path, port_base, durability, replication, certs=None, node_name=None):
    import dataclasses

    import msgspec

    config = load_config(config_path)
    if certs is not None or node_name is not None:
        config = dataclasses.replace(config, tls=msgspec.structs.replace(
            config.tls, directory=certs or config.tls.directory, node=node_name or config.tls.node,
            ca_file="" if certs else config.tls.ca_file,
            certificate_file="" if certs or node_name else config.tls.certificate_file,
            key_file="" if certs or node_name else config.tls.key_file,
        ))
    if port_base is not None:
        config = config.with_ports(port_base)
    if durability is not None:
        config = dataclasses.replace(config, durability=durability)
    if replication is not None:
        config = dataclasses.replace(config, replication=replication)
    return config


def _log(line: str) -> None:
    node_log("cli")(line)


@click.command()
@click.option("--data", "data_root", required=True, type=click.Path(file_okay=False), help="The node's data directory.")
@click.option("--primary", "primary_address", required=True, help="The primary's replication port HOST:PORT.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TOML config (the ports it opens once promoted).")
@click.option("--port-base", type=click.IntRange(0, 65532), help="Use ports PORT..PORT+3 (client, feed, replication, admin).")
@click.option("--replication", type=click.Choice(["sync", "async"]), help="The mode it runs once promoted.")
@_certificate_options("b")
@click.option("--rebuild", is_flag=True,
              help="First move the data directory aside (DIR.diverged-TIME, never deleted) and follow from nothing: "
                   "for a node whose journal truly diverged.")
def standby(data_root: str, primary_address: str, config_path: str | None, port_base: int | None,
            replication: str | None, certs: str | None, node_name: str | None, rebuild: bool) -> None:
    """Run a hot standby that follows a primary (and takes over when promoted)."""
    import os

    from replica.data_directory import set_aside
    from replica.standby_node import run_standby

    config = _node_config(config_path, port_base, None, replication, certs, node_name)
    if rebuild and os.path.exists(data_root):
        kept = set_aside(data_root, time.strftime("%Y%m%dT%H%M%S"))
        _log(f"rebuilding: the old data directory is kept as {kept}")
    sys.exit(_run(run_standby(config, data_root, _endpoint(primary_address), log=node_log("standby"))) or 0)


def _admin(address: str, request: dict, credentials) -> dict:
    from replica.watchdog import admin_request

    return _run(admin_request(_endpoint(address), request, timeout=5.0, credentials=credentials))


@click.command()
@click.argument("admin_address")
@click.option("--force", is_flag=True, help="Promote even with a divergence alarm or beside a primary that beats "
                                             "(needs an operator certificate).")
@click.option("--fence", "fence_address", help="The old primary's admin HOST:PORT: told of the new epoch, it steps down "
                                               "(tried once the promotion succeeded).")
@_admin_credentials_options("operator")
def promote(admin_address: str, force: bool, fence_address: str | None, certs: str | None, identity: str,
            no_tls: bool) -> None:
    """Promote the standby whose admin port is ADMIN_ADDRESS (a failover by hand)."""
    credentials = admin_credentials(certs, identity, no_tls)
    reply = _admin(admin_address, {"command": "promote", "force": force}, credentials)
    if reply.get("promoted") and fence_address is not None:
        # Sync mode already keeps the old primary from acknowledging (its standby left);
        # telling it makes it stop at once, and frees its clients to fail over.
        try:
            reply["fence"] = _admin(fence_address, {"command": "fence", "epoch": reply["epoch"]}, credentials)
        except (OSError, ValueError, asyncio.TimeoutError) as error:
            reply["fence"] = {"fenced": False, "error": f"{type(error).__name__}: {error}"}
    click.echo(json.dumps(reply))
    if not reply.get("promoted"):
        sys.exit(1)


@click.command()
@click.argument("admin_address")
@_admin_credentials_options("operator")
def degrade(admin_address: str, certs: str | None, identity: str, no_tls: bool) -> None:
    """Let a sync-mode primary acknowledge without its standby (journaled, explicit; operator only)."""
    reply = _admin(admin_address, {"command": "degrade"}, admin_credentials(certs, identity, no_tls))
    click.echo(json.dumps(reply))
    if "error" in reply:
        sys.exit(1)


@click.command()
@click.option("--primary", "primary_admin", required=True, help="The primary's admin port HOST:PORT.")
@click.option("--standby", "standby_admin", required=True, help="The standby's admin port HOST:PORT.")
@click.option("--timeout-ms", default=500, show_default=True, type=click.IntRange(50, 600_000))
@click.option("--force", is_flag=True, help="Promote even a standby that may be missing acknowledged records.")
@click.option("--seconds", type=click.FloatRange(0.1), help="Stop after this long (default: watch for ever).")
@click.option("--once", is_flag=True, help="Exit after the first promotion instead of re-arming for the new pair.")
@_admin_credentials_options("watchdog")
def watchdog(primary_admin: str, standby_admin: str, timeout_ms: int, force: bool, seconds: float | None,
             once: bool, certs: str | None, identity: str, no_tls: bool) -> None:
    """Watch both nodes; promote the standby when the primary has been silent for the timeout.

    A watchdog certificate may promote, not force: with --force, pass --identity operator."""
    from replica.watchdog import run_watchdog

    if force and not no_tls and identity == "watchdog":
        # Refused at every poll otherwise: the admin port lets only an operator force.
        raise click.UsageError("--force needs an operator's certificate: add --identity operator")

    sys.exit(_run(run_watchdog(_endpoint(primary_admin), _endpoint(standby_admin), timeout_ms,
                               force=force, log=node_log("watchdog"), seconds=seconds, once=once,
                               credentials=admin_credentials(certs, identity, no_tls))))


@click.command(name="hash-token")
@click.option("--json", "as_json", is_flag=True, help="Print {\"token_hash\": ...}.")
def hash_token_command(as_json: bool) -> None:
    """Print the scrypt hash of a member token for its token_hash in a config file.

    The token is read from standard input when it is not a terminal (`twinbook hash-token
    < token.txt`, one line), else prompted for without echo and asked twice; never from
    the command line, where `ps` would show it.
    """
    if sys.stdin.isatty():
        token = click.prompt("token", hide_input=True, confirmation_prompt=True, err=True)
    else:
        token = sys.stdin.readline().rstrip("\r\n")
    if not token:
        raise click.UsageError("an empty token: give the token on standard input or at the prompt")
    token_hash = hash_token(token)
    click.echo(json.dumps({"token_hash": token_hash}) if as_json else token_hash)


def _print_event(event) -> None:
    click.echo(json.dumps(msgspec.to_builtins(event)))


_connection_options = [
    click.option("--endpoint", "endpoints", multiple=True, default=["127.0.0.1:7701"], show_default=True, help="HOST:PORT; repeat for failover order."),
    click.option("--member", default="M1", show_default=True),
    click.option("--token", default="demo-M1", show_default=True),
    click.option("--wait-ms", default=300, show_default=True, type=click.IntRange(0, 60_000), help="How long to keep printing reports after the answer."),
    click.option("--timeout", "timeout_seconds", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600),
                 expose_value=False, callback=lambda context, _parameter, value: context.meta.__setitem__("timeout", value),
                 help="Give up (exit 3, naming the endpoints tried) when connecting, logging on or the answer "
                      "takes longer than this many seconds."),
    click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), expose_value=False,
                 callback=lambda context, _parameter, value: context.meta.__setitem__("tls_ca", value),
                 help="TLS to the gateway, verified against this CA file (a node with [tls] members = true)."),
]


def _with_connection(function):
    for option in reversed(_connection_options):
        function = option(function)
    return function


def _member_context(ca_file: str | None):
    from replica.tls import member_client_context

    return None if ca_file is None else member_client_context(ca_file)


async def _with_client(endpoints, member, token, wait_ms, action):
    from replica.client import OrderClient

    meta = click.get_current_context().meta
    timeout_seconds = meta.get("timeout", 10.0)
    tried = ", ".join(endpoints)
    client = OrderClient([_endpoint(text) for text in endpoints], member, token,
                         ssl_context=_member_context(meta.get("tls_ca")))
    try:
        await asyncio.wait_for(client.connect(), timeout_seconds)
    except asyncio.TimeoutError:
        await client.close()
        raise exit_codes.OperatingFault(f"no session with {tried} within {timeout_seconds:g} s "
                                        f"(connect and logon as {member}; --timeout to wait longer)") from None
    except OSError as error:
        await client.close()
        raise exit_codes.OperatingFault(f"cannot reach {tried}: {one_line(error)}") from None
    try:
        try:
            answer = await asyncio.wait_for(action(client), timeout_seconds)
        except asyncio.TimeoutError:
            raise exit_codes.OperatingFault(f"no answer from {tried} within {timeout_seconds:g} s "
                                            "(--timeout to wait longer)") from None
        if answer is not None:
            _print_event(answer)
        deadline = time.monotonic() + wait_ms / 1000
        while time.monotonic() < deadline:
            try:
                event = await asyncio.wait_for(client.reports.get(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if event is not answer:
                _print_event(event)
    finally:
        await client.close()


@click.group()
def client() -> None:
    """Trade from the shell: place, cancel, replace, status."""


@client.command()
@_with_connection
@click.option("--client-order-id", required=True)
@click.option("--symbol", required=True)
@click.option("--side", type=click.Choice(["buy", "sell"]), required=True)
@click.option("--type", "order_type", type=click.Choice(["limit", "market", "stop", "stop_limit"]), default="limit", show_default=True)
@click.option("--qty", type=int, required=True)
@click.option("--price", type=int)
@click.option("--tif", type=click.Choice(["gtc", "ioc", "fok", "day"]))
@click.option("--post-only", is_flag=True, default=None)
@click.option("--display-qty", type=int)
@click.option("--stop-price", type=int)
@click.option("--stp", type=click.Choice(["none", "cancel_newest", "cancel_oldest", "cancel_both", "decrement"]))
def place(endpoints, member, token, wait_ms, client_order_id, symbol, side, order_type, qty, price, tif, post_only, display_qty, stop_price, stp):
    """Place an order and print its reports."""
    fields = dict(price=price, tif=tif, post_only=post_only, display_qty=display_qty, stop_price=stop_price, stp=stp)
    fields = {key: value for key, value in fields.items() if value is not None}
    _run(_with_client(endpoints, member, token, wait_ms,
                      lambda c: c.place(client_order_id, symbol, side, order_type, qty, **fields)))


@client.command()
@_with_connection
@click.option("--order-id", type=int)
@click.option("--client-order-id")
def cancel(endpoints, member, token, wait_ms, order_id, client_order_id):
    """Cancel an order by order id or client order id."""
    if order_id is None and client_order_id is None:
        raise click.UsageError("give --order-id or --client-order-id")
    _run(_with_client(endpoints, member, token, wait_ms, lambda c: c.cancel(order_id, client_order_id)))


@client.command()
@_with_connection
@click.option("--order-id", type=int, required=True)
@click.option("--qty", type=int, required=True)
@click.option("--price", type=int)
def replace(endpoints, member, token, wait_ms, order_id, qty, price):
    """Replace an order's quantity and/or price."""
    _run(_with_client(endpoints, member, token, wait_ms, lambda c: c.replace(order_id, qty, price)))


@client.command()
@_with_connection
@click.option("--order-id", type=int, required=True)
def status(endpoints, member, token, wait_ms, order_id):
    """Show one of your orders as the node sees it now."""
    _run(_with_client(endpoints, member, token, 0, lambda c: c.order_status(order_id)))


@click.command()
@click.option("--endpoint", default="127.0.0.1:7702", show_default=True, help="The feed port HOST:PORT (with --multicast: where snapshots come from).")
@click.option("--symbol", required=True)
@click.option("--levels", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--seconds", default=0, type=click.IntRange(0), help="Stop after this long (0: until interrupted).")
@click.option("--raw", is_flag=True, help="Print each feed message as JSON instead of a live view.")
@click.option("--multicast", "multicast_group", help="Follow the multicast feed GROUP:PORT instead of the TCP feed.")
@click.option("--retransmit", "retransmit_addresses", multiple=True, help="Retransmission server HOST:PORT (with --multicast; repeat for failover order).")
@click.option("--interface", default="127.0.0.1", show_default=True, help="Local address of the interface that joins the group.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), help="TLS to the feed port, verified against this CA file.")
def feed(endpoint: str, symbol: str, levels: int, seconds: int, raw: bool, multicast_group: str | None,
         retransmit_addresses: tuple[str, ...], interface: str, tls_ca: str | None) -> None:
    """A live view of one symbol's book and trades (TCP feed, or multicast with gap repair)."""
    from replica.feed_client import BookView, follow_feed

    view = BookView(symbol)
    interactive = sys.stdout.isatty() and not raw

    def show(message) -> None:
        if raw:
            click.echo(json.dumps(msgspec.to_builtins(message)))
            return
        if interactive:
            click.echo("\x1b[2J\x1b[H" + view.render(levels), nl=False)
        else:
            click.echo(view.render(levels))

    if multicast_group is None:
        if retransmit_addresses:
            raise click.UsageError("--retransmit goes with --multicast")
        if interactive and sys.stdin.isatty():
            from tools.feed_view import run_live_view

            _run(run_live_view(_endpoint(endpoint), symbol, levels, seconds or None,
                               ssl_context=_member_context(tls_ca)))
            return
        _run(follow_feed(_endpoint(endpoint), view, show, seconds or None, ssl_context=_member_context(tls_ca)))
        return
    if not retransmit_addresses:
        raise click.UsageError("--multicast needs --retransmit HOST:PORT (the node's retransmission server)")
    from replica.multicast_client import MulticastSubscriber

    group, port = _endpoint(multicast_group)

    def on_message(sequence: int, updates: list) -> None:
        for update in updates:
            if update.symbol != symbol:
                continue
            if raw:
                click.echo(json.dumps({"sequence": sequence, "symbol": symbol,
                                       "events": msgspec.to_builtins(update.events)}))
            else:
                show(None)

    subscriber = MulticastSubscriber(
        group, port, retransmit=[_endpoint(text) for text in retransmit_addresses], symbols=[symbol],
        snapshot_endpoints=[_endpoint(endpoint)], interface=interface, on_message=on_message,
    )
    # The subscriber keeps its own BookView per symbol: show that one.
    view = subscriber.books[symbol]
    _run(subscriber.run(seconds=seconds or None))
    core = subscriber.core
    _log(f"multicast feed: delivered through {subscriber.delivered_through}, {core.packets} packets, "
         f"{core.gaps_requested} gaps requested, {core.retransmitted_messages} messages retransmitted, "
         f"{core.snapshots_requested} snapshots")
