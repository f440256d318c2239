"""`twinbook config check FILE`: load a node config as a node would, and report.

It decodes the file through replica.config (msgspec Structs, unknown keys refused, strict
types), so a typo fails here with the file and key named instead of at start-up. On
success it prints the addresses the node would bind and the members whose token hashes
are of the earlier SHA-256 scheme (accepted, but worth a `twinbook hash-token` rehash).
Exit 0 when the file loads, 2 (usage: a config that cannot be used) when it does not.
"""

from __future__ import annotations

import json

import click

from replica.config import ConfigError, load_config, token_needs_rehash
from tools import exit_codes


class ConfigUnusable(click.ClickException):
    """A config file that cannot be used: one line naming the file and key, exit 2."""

    exit_code = exit_codes.USAGE


@click.group(name="config")
def config_group() -> None:
    """Check node configuration files."""


@config_group.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def check(path: str, as_json: bool) -> None:
    """Load PATH as a node would; exit 0 if it is usable, 2 naming the bad key if not."""
    try:
        config = load_config(path)
    except ConfigError as error:
        raise ConfigUnusable(str(error)) from None
    summary = {
        "path": path,
        "cluster_id": config.cluster_id,
        "client": f"{config.host}:{config.client_port}",
        "feed": f"{config.host}:{config.feed_port}",
        "replication": f"{config.host}:{config.replication_port}",
        "admin": f"{config.host}:{config.admin_port}",
        "metrics": f"{config.metrics.host}:{config.metrics.port}" if config.metrics.enabled else None,
        "multicast": f"{config.multicast.group}:{config.multicast.port}" if config.multicast else None,
        "tls": config.tls.enabled,
        "instruments": [instrument.symbol for instrument in config.instruments],
        "members": [member.name for member in config.members],
        "members_needing_rehash": [member.name for member in config.members if token_needs_rehash(member.token_hash)],
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"OK {path}: cluster {config.cluster_id}, client {summary['client']}, feed {summary['feed']}, "
               f"replication {summary['replication']}, admin {summary['admin']}, "
               f"metrics {summary['metrics'] or 'off'}, multicast {summary['multicast'] or 'off'}, "
               f"tls {'on' if config.tls.enabled else 'off'}, {len(config.instruments)} instruments, "
               f"{len(config.members)} members")
    for name in summary["members_needing_rehash"]:
        click.echo(f"  member {name}: token_hash is salted SHA-256; rehash with `twinbook hash-token`")
