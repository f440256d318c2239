"""`twinbook certs init DIR`: a cluster's CA and the certificates of its nodes, watchdog and operator.

The files and what they mean are in replica/certs.py; who may use which one where is in
replica/tls.py. Point nodes at DIR with a config's [tls] directory, `--certs DIR`, or
$TWINBOOK_CERTS (the embedded defaults look in ./twinbook-certs).
"""

from __future__ import annotations

import json

import click

from replica.certs import VALIDITY_DAYS_DEFAULT, create_cluster_certificates


@click.group(name="certs")
def certs_group() -> None:
    """Create a cluster's TLS certificates."""


@certs_group.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--cluster-id", default=1, show_default=True, type=click.IntRange(0, 2**64 - 1), help="The config's cluster_id.")
@click.option("--node", "nodes", multiple=True, default=["a", "b"], show_default=True, help="A node name (repeat): node-NAME.pem/.key.")
@click.option("--days", default=VALIDITY_DAYS_DEFAULT, show_default=True, type=click.IntRange(1, 36500), help="Validity.")
@click.option("--json", "as_json", is_flag=True, help="Print the files created as one JSON object.")
def init(directory: str, cluster_id: int, nodes: tuple[str, ...], days: int, as_json: bool) -> None:
    """Create DIRECTORY's CA, node, watchdog and operator certificates (keys mode 0600)."""
    stems = create_cluster_certificates(directory, cluster_id, nodes, days)
    if as_json:
        click.echo(json.dumps({"cluster_id": cluster_id, "directory": directory,
                               "certificates": [f"{stem}.pem" for stem in stems]}))
        return
    click.echo(f"cluster {cluster_id} certificates in {directory}: " + ", ".join(f"{stem}.pem" for stem in stems))
