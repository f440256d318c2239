"""`twinbook status ADMIN...`: one view of a cluster from its nodes' admin ports.

For every named node: its role, epoch, sequences (sequenced, durable, applied), its
replication lag, and the state digest at the newest sequence every answering node holds
a digest for (each node keeps its digests at multiples of 1024 records and the one at
its applied sequence now: admin `digests`); whether those digests agree.

    ADDRESS          ROLE     EPOCH  SEQUENCED  DURABLE  APPLIED  LAG
    127.0.0.1:7704   primary      1      52310    52310    52310    0
    127.0.0.1:7708   standby      1      52310    52310    52310    0
    digests at 52224: agree

Lag: on a primary, its journal's last sequence less its standby's durable sequence
(None without a standby); on a standby, the primary's last sequence it knows less its
own durable sequence. Exit 0 when every node answered and the digests agree (or there
is no common sequence to compare), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Optional

import click

from tools import exit_codes
from tools.digests import digest_text
from tools.commands_node import _admin_credentials_options, _endpoint, _run, admin_credentials


def _lag(status: dict) -> Optional[int]:
    if status.get("role") == "primary":
        if not status.get("standby_attached"):
            return None
        return status["last_sequence"] - status["standby_durable_sequence"]
    return max(0, status.get("primary_last_sequence", 0) - status.get("durable_sequence", 0))


def common_digest(digests_by_node: list[list]) -> tuple[Optional[int], Optional[bool]]:
    """The newest sequence every node holds a digest for, and whether they agree there."""
    if not digests_by_node:
        return None, None
    held = [dict((sequence, digest) for sequence, digest in pairs) for pairs in digests_by_node]
    common = set(held[0]).intersection(*held[1:]) - {0}
    if not common:
        return None, None
    sequence = max(common)
    return sequence, len({node[sequence] for node in held}) == 1


async def _query(address: tuple[str, int], credentials=None) -> dict:
    from replica.watchdog import admin_request

    try:
        status = await admin_request(address, {"command": "status"}, timeout=2.0, credentials=credentials)
        digests = await admin_request(address, {"command": "digests"}, timeout=2.0, credentials=credentials)
    except (OSError, asyncio.TimeoutError, ValueError, ConnectionError) as error:
        return {"address": f"{address[0]}:{address[1]}", "error": f"{type(error).__name__}: {error}"}
    return {
        "address": f"{address[0]}:{address[1]}",
        "role": status.get("role"),
        "epoch": status.get("epoch"),
        "sequenced_sequence": status.get("sequenced_sequence", status.get("last_sequence")),
        "durable_sequence": status.get("durable_sequence"),
        "applied_sequence": status.get("applied_sequence"),
        "replication_lag": _lag(status),
        "digests": digests.get("digests", []),
    }


async def cluster_view(addresses: list[tuple[str, int]], credentials=None) -> dict:
    """Every node's view, and the digest comparison, as one JSON-ready object
    (`credentials`: replica.tls.ClientCredentials for nodes with mutual TLS)."""
    nodes = list(await asyncio.gather(*(_query(address, credentials) for address in addresses)))
    answered = [node for node in nodes if "error" not in node]
    sequence, agree = common_digest([node["digests"] for node in answered])
    for node in answered:
        digests = dict((pair_sequence, digest) for pair_sequence, digest in node.pop("digests"))
        node["digest_at_common_sequence"] = digest_text(digests.get(sequence)) if sequence is not None else None
    return {"nodes": nodes, "common_sequence": sequence, "digests_agree": agree,
            "all_answered": len(answered) == len(nodes)}


@click.command()
@click.argument("admin_addresses", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_credentials_options("operator")
def status(admin_addresses: tuple[str, ...], as_json: bool, certs: str | None, identity: str, no_tls: bool) -> None:
    """Show every named node's role, epoch, sequences, lag and digest agreement."""
    view = _run(cluster_view([_endpoint(address) for address in admin_addresses],
                             admin_credentials(certs, identity, no_tls)))
    if as_json:
        click.echo(json.dumps(view))
    else:
        click.echo(f"{'ADDRESS':22} {'ROLE':8} {'EPOCH':>5} {'SEQUENCED':>10} {'DURABLE':>10} {'APPLIED':>10} {'LAG':>6}")
        for node in view["nodes"]:
            if "error" in node:
                click.echo(f"{node['address']:22} not answering: {node['error']}")
                continue
            lag = "-" if node["replication_lag"] is None else node["replication_lag"]
            click.echo(f"{node['address']:22} {node['role']:8} {node['epoch']:>5} {node['sequenced_sequence']:>10} "
                       f"{node['durable_sequence']:>10} {node['applied_sequence']:>10} {lag:>6}")
        if view["common_sequence"] is None:
            click.echo("digests: no sequence held by every node yet")
        else:
            click.echo(f"digests at {view['common_sequence']}: {'agree' if view['digests_agree'] else 'DIFFER'}")
    if not view["all_answered"] or view["digests_agree"] is False:
        sys.exit(exit_codes.CHECK_FAILED)
