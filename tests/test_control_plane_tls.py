"""The authenticated control plane, attacked as a local process would (issue 17).

Real node processes on loopback with mutual TLS (the session's certificates,
tests/conftest.py); the hostile peers are this test process with nothing but a socket,
or with a certificate that must not do: none at all, one of another cluster's CA, an
expired one of this CA, one of this CA naming another cluster, or a watchdog's/node's
where an operator's is needed. Each must be refused before anything it sends is read:
no journal byte out to a fake standby, no frame into a standby from a fake primary, no
Ack, Hello or epoch acted on, no promote/degrade/snapshot carried out. Positive controls
(the same hostile code with a good certificate gets through) show each check can fail.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

import journal
from node_helpers import (  # noqa: F401
    HOST,
    ROOT,
    certificates,
    close_all,
    cluster,
    connect,
    credentials,
    journal_segments,
    place_orders,
    run,
    twinbook_command,
    wait_until,
)
from replica.certs import Authority, issue, load_authority, write_pair
from replica.protocol import encode_frame
from replica.replication import REPLICATION_PROTOCOL_VERSION, Accepted, Ack, Frames, Hello, LinkFrameReader, link_decoder
from replica.tls import (
    ClientCredentials,
    PeerIdentity,
    RefusalLog,
    TlsFiles,
    admin_refusal,
    member_client_context,
    mutual_client_context,
    mutual_server_context,
    peer_identity,
)
from statemachine import AddInstrument, PlaceOrder
from statemachine.codec import encode_command
from statemachine.events import OrderAccepted

READ_SECONDS = 2.0


# ---------------------------------------------------------------- hostile credentials


def _files(directory: Path, stem: str) -> TlsFiles:
    return TlsFiles(str(directory / "ca.pem"), str(directory / f"{stem}.pem"), str(directory / f"{stem}.key"))


def _issued(tmp_path: Path, stem: str, authority: Authority, role: str, name: str, **validity) -> TlsFiles:
    """A certificate of `authority` written to tmp_path (the CA file: cluster 1's, which
    is what a peer of cluster 1 verifies the other side against)."""
    directory = tmp_path / "issued"
    directory.mkdir(exist_ok=True)
    certificate, key = issue(authority, role, name, **validity)
    write_pair(str(directory), stem, certificate, key)
    return TlsFiles(str(certificates(1) / "ca.pem"), str(directory / f"{stem}.pem"), str(directory / f"{stem}.key"))


def hostile_contexts(tmp_path: Path) -> dict[str, Optional[ssl.SSLContext]]:
    """What an attacker may hold, as client contexts (None: plain TCP)."""
    ours = load_authority(str(certificates(1)))
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = _issued(tmp_path, "expired", ours, "node", "x", not_before=now - datetime.timedelta(days=10),
                      not_after=now - datetime.timedelta(days=1))
    # Signed by this very CA but naming cluster 2: the binding, not the signature, refuses it.
    other_binding = _issued(tmp_path, "bound-elsewhere", Authority(ours.certificate, ours.key, 2), "node", "x")
    no_certificate = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_certificate.check_hostname = False
    no_certificate.load_verify_locations(str(certificates(1) / "ca.pem"))
    return {
        "plain TCP": None,
        "TLS without a certificate": no_certificate,
        "another cluster's CA": mutual_client_context(_files(certificates(2), "node-a")),
        "an expired certificate": mutual_client_context(expired),
        "this CA, another cluster's URI": mutual_client_context(other_binding),
    }


def hostile_session(address: tuple[str, int], context: Optional[ssl.SSLContext], payload: bytes,
                    read_seconds: float = READ_SECONDS) -> bytes:
    """Connect (TLS with `context`, plain without), send `payload`, return every byte of
    application data that came back before EOF, a reset, a TLS alert or `read_seconds`."""
    raw = socket.create_connection(address, timeout=5)
    received = b""
    try:
        sock = raw
        if context is not None:
            try:
                sock = context.wrap_socket(raw)
            except (ssl.SSLError, OSError):
                return b""
        try:
            sock.sendall(payload)
        except OSError:
            return b""
        deadline = time.monotonic() + read_seconds
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ssl.SSLError, OSError):
                break
            if not chunk:
                break
            received += chunk
    finally:
        raw.close()
    return received


def assert_no_link_message(received: bytes, what: str) -> None:
    """Nothing of the link protocol came back. Plain TCP may get a TLS alert record (at
    most 7 bytes: the server speaks TLS, not the link); TLS sessions get no data at all."""
    assert len(received) <= 7, f"{what}: {len(received)} bytes came back: {received[:64]!r}"
    assert not received or received[:1] == b"\x15", f"{what}: not a TLS alert: {received!r}"


def forged_hello(epoch: int = 0, cluster_id: int = 1) -> bytes:
    return encode_frame(Hello(REPLICATION_PROTOCOL_VERSION, cluster_id, epoch, 0, 0, []))


# ---------------------------------------------------------------- the replication port


def test_a_fake_standby_without_a_valid_certificate_is_refused_and_receives_no_journal_byte(cluster, tmp_path):
    primary = cluster.primary("primary")
    contexts = hostile_contexts(tmp_path)
    for what, context in contexts.items():
        received = hostile_session(primary.replication, context, forged_hello())
        assert_no_link_message(received, what)
    # Positive control: the same session with a node certificate of this cluster is
    # answered with Accepted and the journal's frames.
    received = hostile_session(primary.replication, mutual_client_context(_files(certificates(1), "node-c")),
                               forged_hello(), read_seconds=1.0)
    messages = [link_decoder.decode(payload) for payload in LinkFrameReader().feed(received)]
    assert messages and type(messages[0]) is Accepted, messages
    assert any(type(message) is Frames for message in messages), messages
    log = wait_until(lambda: (lambda text: text.count("REFUSED replication connection from 127.0.0.1:") >= 5 and text)(
        primary.log()), 10, what="five refusals logged")
    for reason in ("certificate has expired", "not of cluster 1"):
        assert reason in log, log
    assert "did not start with a hello" not in log and "stepping down" not in log, log


@pytest.mark.parametrize("credential", ["another cluster's CA", "an expired certificate"])
def test_a_real_standby_with_a_bad_certificate_is_refused_and_journals_nothing(cluster, tmp_path, credential):
    # The real `twinbook standby`, trusting this cluster's CA (so it accepts the primary)
    # but presenting a certificate the primary must refuse.
    primary = cluster.primary("primary")
    assert run(place_orders(primary, 20), timeout=60) == 20
    if credential == "an expired certificate":
        now = datetime.datetime.now(datetime.timezone.utc)
        files = _issued(tmp_path, "expired", load_authority(str(certificates(1))), "node", "x",
                        not_before=now - datetime.timedelta(days=10), not_after=now - datetime.timedelta(days=1))
    else:
        files = _files(certificates(2), "node-a")
    standby = cluster.node("standby", tls={"ca_file": str(certificates(1) / "ca.pem"),
                                           "certificate_file": files.certificate_file, "key_file": files.key_file})
    standby.start_standby(primary.replication)
    wait_until(lambda: "no answer from the primary at" in standby.log(), 20, what="the standby telling why")
    wait_until(lambda: "REFUSED replication connection from 127.0.0.1:" in primary.log(), 10,
               what="the primary's refusal logged")
    # (Its admin port presents the same bad certificate, so the journal on disk tells.)
    assert not primary.status()["standby_attached"] and "attached" not in primary.log()
    standby.kill()
    assert list(journal.read_records(standby.data_dir / "journal")) == []


def test_each_refusal_is_logged_once_with_the_peer_address_not_once_per_attempt(cluster):
    primary = cluster.primary("primary")
    ports = []
    for _ in range(6):
        raw = socket.create_connection(primary.replication, timeout=5)
        ports.append(raw.getsockname()[1])
        raw.sendall(forged_hello())
        raw.settimeout(READ_SECONDS)
        try:
            while raw.recv(4096):
                pass
        except OSError:
            pass
        raw.close()
    wait_until(lambda: "REFUSED replication connection from" in primary.log(), 10, what="the refusal logged")
    lines = [line for line in primary.log().splitlines() if "REFUSED replication connection from" in line]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{ports[0]}" in lines[0], (lines, ports)
    assert primary.status()["role"] == "primary"


def test_a_forged_high_epoch_hello_from_an_unauthenticated_peer_changes_nothing(cluster, tmp_path):
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    wait_until(lambda: primary.status()["standby_attached"], 20, what="the standby attached")
    before = primary.status()
    for what, context in hostile_contexts(tmp_path).items():
        payload = forged_hello(epoch=999) + encode_frame(Ack(10**9, 10**9, 0, 0))
        assert_no_link_message(hostile_session(primary.replication, context, payload, read_seconds=0.5), what)
    after = primary.status()
    assert primary.running and after["role"] == "primary" and after["epoch"] == before["epoch"], after
    assert after["standby_attached"] and after["standby_durable_sequence"] <= after["last_sequence"], after
    assert "stepping down" not in primary.log()
    # It keeps acknowledging, through its real standby.
    assert run(place_orders(primary, 3, prefix="after-hello", members=("M1",)), timeout=30) == 3
    assert standby.status()["role"] == "standby"


def test_a_forged_ack_from_an_unauthenticated_peer_releases_nothing_while_the_standby_is_down(cluster, tmp_path):
    # The attack of issue 17: with the real standby stopped, a sync primary must hold
    # acknowledgements; a forged Ack "durable up to everything" would have released them.
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    wait_until(lambda: primary.status()["standby_attached"], 20, what="the standby attached")
    standby.kill()
    wait_until(lambda: not primary.status()["standby_attached"], 20, what="the primary seeing its standby go")
    contexts = hostile_contexts(tmp_path)

    async def scenario():
        loop = asyncio.get_running_loop()
        client = await connect(primary, "M2")
        try:
            answer = client.send_place("held", "AAPL", "sell", "limit", 1, price=19005)
            for what, context in contexts.items():
                last = primary.status()["last_sequence"]
                payload = forged_hello() + encode_frame(Ack(last + 100, last + 100, 0, 0))
                received = await loop.run_in_executor(None, hostile_session, primary.replication, context, payload, 0.3)
                assert_no_link_message(received, what)
            status = primary.status()
            assert not answer.done(), "acknowledged with no standby durable: the forged Ack counted"
            assert status["released_sequence"] < status["last_sequence"], status
            assert status["standby_durable_sequence"] < status["last_sequence"], status
            await standby.start_standby_async(primary.replication)
            return await asyncio.wait_for(answer, 20)
        finally:
            await close_all(client)

    assert type(run(scenario(), timeout=60)) is OrderAccepted  # released by the real standby, only


# ---------------------------------------------------------------- a fake primary


def _source_frames(path: Path, records: int = 5) -> tuple[bytes, int]:
    """A cluster-1 journal from nothing (what an empty standby would take as valid)."""
    with journal.JournalWriter.open(path, 1, durability="none") as writer:
        writer.append(0, 1_000, encode_command(AddInstrument("AAPL", 1, 1, 1000, 19000)))
        for index in range(records - 1):
            writer.append(0, 2_000 + index, encode_command(
                PlaceOrder("M1" if index % 2 else "M2", f"forged-{index}", "AAPL", "buy" if index % 2 else "sell",
                           "limit", 1, price=19000)))
    return b"".join(journal.read_frames(path)), records


@pytest.mark.parametrize("fake", ["plain TCP", "another cluster's node certificate",
                                  "this CA, another cluster's URI", "this cluster's node certificate (control)"])
def test_a_fake_primary_cannot_get_one_record_into_a_standby_journal(cluster, tmp_path, fake):
    frames, records = _source_frames(tmp_path / "source")
    contexts = {
        "plain TCP": None,
        "another cluster's node certificate": mutual_server_context(_files(certificates(2), "node-a")),
        "this CA, another cluster's URI": mutual_server_context(_issued(
            tmp_path, "bound-elsewhere", Authority(load_authority(str(certificates(1))).certificate,
                                                   load_authority(str(certificates(1))).key, 2), "node", "x")),
        "this cluster's node certificate (control)": mutual_server_context(_files(certificates(1), "node-c")),
    }
    connections: list[int] = []

    async def scenario():
        async def fake_primary(reader, writer):
            # It does not even wait for the Hello: straight to Accepted and the records.
            connections.append(1)
            try:
                writer.write(encode_frame(Accepted(0, 1, records)) + encode_frame(Frames(1, records, frames, records)))
                await writer.drain()
                while await asyncio.wait_for(reader.read(65536), 10):
                    pass
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(fake_primary, HOST, 0, ssl=contexts[fake])
        try:
            standby = cluster.node("standby")
            await standby.start_standby_async(server.sockets[0].getsockname()[:2])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            if fake.endswith("(control)"):
                while loop.time() < deadline and standby.status()["applied_sequence"] < records:
                    await asyncio.sleep(0.05)
                return standby, standby.status()
            # Refused by the standby: logged, and it dials again (with backoff). A plain
            # fake sees each connection; a TLS one's handler runs only after a handshake
            # both sides accepted, so there only the standby's log tells.
            while loop.time() < deadline and ((fake == "plain TCP" and len(connections) < 3)
                                              or "REFUSED" not in standby.log()):
                await asyncio.sleep(0.05)
            return standby, standby.status()
        finally:
            server.close()

    standby, status = run(scenario(), timeout=60)
    if fake.endswith("(control)"):
        assert status["applied_sequence"] == records, status  # the same fake, trusted, gets through
        return
    assert fake != "plain TCP" or len(connections) >= 3, standby.log()
    log = standby.log()
    assert f"REFUSED replication link to the primary at {HOST}:" in log, log
    assert status["last_sequence"] == status["durable_sequence"] == status["applied_sequence"] == 0, status
    standby.kill()
    stored = b"".join(journal_segments(standby).values())
    assert b"forged-" not in stored and list(journal.read_records(standby.data_dir / "journal")) == []


# ---------------------------------------------------------------- the admin port


def _admin_with(address: tuple[str, int], context: Optional[ssl.SSLContext], request: dict) -> Optional[dict]:
    """One admin request through `context` (None: plain); None if no answer came."""
    import json

    received = hostile_session(address, context, json.dumps(request).encode() + b"\n", read_seconds=2.0)
    return json.loads(received) if received.endswith(b"\n") else None


def test_the_admin_port_refuses_promote_degrade_and_snapshot_without_an_operator_certificate(cluster, tmp_path):
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    wait_until(lambda: primary.status()["standby_attached"], 20, what="the standby attached")
    strangers = hostile_contexts(tmp_path)
    strangers["another cluster's operator"] = credentials("operator", cluster_id=2).context
    # Certificates of this cluster that are not an operator's.
    insiders = {"watchdog": credentials("watchdog").context, "node": credentials("node-c").context}
    requests = [(standby, {"command": "promote", "force": True}), (primary, {"command": "degrade"}),
                (primary, {"command": "snapshot"})]
    for node, request in requests:
        for what, context in strangers.items():
            assert _admin_with(node.admin_address, context, request) is None, (what, request)
        for what, context in insiders.items():
            reply = _admin_with(node.admin_address, context, request)
            assert reply is not None and reply.get("refused") == "not_permitted", (what, request, reply)
    # A node certificate may not even promote; a watchdog's may, without force (not tried
    # here: it would promote), and both may ask for status.
    reply = _admin_with(standby.admin_address, insiders["node"], {"command": "promote"})
    assert reply["refused"] == "not_permitted", reply
    for context in insiders.values():
        assert _admin_with(standby.admin_address, context, {"command": "status"})["role"] == "standby"
    assert standby.status()["role"] == "standby" and not primary.status()["degraded"]
    # The CLI says so too, with a non-zero exit.
    result = subprocess.run(twinbook_command("degrade", f"{HOST}:{primary.admin_address[1]}",
                                             *primary.admin_arguments("watchdog")),
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "not_permitted" in result.stdout, result.stdout + result.stderr
    log = primary.log()
    assert "REFUSED admin request 'degrade' from 127.0.0.1:" in log and "watchdog watchdog of cluster 1" in log, log
    assert "REFUSED admin connection from 127.0.0.1:" in log, log
    # Control: the operator's certificate is obeyed.
    reply = _admin_with(primary.admin_address, credentials("operator").context, {"command": "snapshot"})
    assert reply is not None and "refused" not in reply and "snapshot_started" in reply, reply


# ---------------------------------------------------------------- members: TLS gateway and feed


def test_a_gateway_with_tls_takes_logons_over_tls_only_and_the_feed_too(cluster):
    from replica.client import ClientError, OrderClient
    from replica.feed_client import BookView, follow_feed

    node = cluster.node("primary", tls={"directory": str(certificates(1)), "node": "a", "members": True})
    node.start_primary()
    context = member_client_context(str(certificates(1) / "ca.pem"))

    async def scenario():
        client = OrderClient([node.client], "M1", "demo-M1", ssl_context=context)
        await asyncio.wait_for(client.connect(), 15)
        try:
            answer = await asyncio.wait_for(client.place("tls-1", "AAPL", "buy", "limit", 3, price=19000), 10)
        finally:
            await client.close()
        plain = OrderClient([node.client], "M1", "demo-M1")
        plain_refused = False
        try:
            await asyncio.wait_for(plain.connect(), 20)
        except (ClientError, asyncio.TimeoutError, OSError):
            plain_refused = True
        finally:
            await plain.close()
        view = BookView("AAPL")
        seen: list = []
        await follow_feed(node.feed, view, seen.append, seconds=1.0, ssl_context=context)
        return answer, plain_refused, view, seen

    answer, plain_refused, view, seen = run(scenario(), timeout=90)
    assert type(answer) is OrderAccepted, answer
    assert plain_refused, "a plain-TCP logon was taken by a TLS gateway"
    assert seen and view.bids.get(19000, (0, 0))[0] >= 3, (seen[:3], view.bids)


# ---------------------------------------------------------------- certificates and config


def test_certs_init_writes_a_cluster_with_private_keys_0600_and_never_overwrites(tmp_path):
    directory = tmp_path / "certs"
    result = subprocess.run(twinbook_command("certs", "init", str(directory), "--cluster-id", "7", "--node", "x",
                                             "--node", "y"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in directory.iterdir())
    assert names == sorted(f"{stem}.{suffix}" for stem in ("ca", "node-x", "node-y", "watchdog", "operator")
                           for suffix in ("pem", "key")), names
    for path in directory.glob("*.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    held = ClientCredentials.load(str(directory), "operator")
    assert held.cluster_id == 7
    again = subprocess.run(twinbook_command("certs", "init", str(directory)), cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 3 and "never overwritten" in again.stderr, again.stderr
    # Each certificate names its holder and cluster; a node's serves and dials.
    from cryptography import x509

    node = x509.load_pem_x509_certificate((directory / "node-y.pem").read_bytes())
    uris = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == ["twinbook://cluster/7/node/y"]


def test_a_node_without_its_certificate_stops_at_start_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run(twinbook_command("primary", "--data", str(tmp_path / "node"), "--port-base", "0",
                                             "--certs", str(missing)),
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert str(missing / "ca.pem") in result.stderr and "twinbook certs init" in result.stderr, result.stderr


def test_the_tls_table_is_checked_and_its_paths_are_relative_to_the_config_file(tmp_path):
    from replica.config import ConfigError, load_config, parse_config

    config_path = tmp_path / "conf" / "node.toml"
    config_path.parent.mkdir()
    config_path.write_text('[tls]\ndirectory = "certs"\nnode = "b"\nmembers = true\n')
    tls = load_config(str(config_path)).tls
    files = tls.files()
    assert files.ca_file == str(tmp_path / "conf" / "certs" / "ca.pem")
    assert files.certificate_file == str(tmp_path / "conf" / "certs" / "node-b.pem") and tls.members
    assert parse_config("").tls.enabled  # on by default, with no [tls] table at all
    for text, expected in (('[tls]\nenable = true\n', "x.toml: tls: unknown key enable"),
                           ('[tls]\nenabled = "yes"\n', "tls.enabled: expected `bool`, got `str`"),
                           ('[tls]\nenabled = false\nmembers = true\n', "members needs TLS"),
                           ('[tls]\nnode = "../a"\n', "not a path")):
        with pytest.raises(ConfigError, match=expected):
            parse_config(text, "x.toml")


# ---------------------------------------------------------------- the rules, as units


def test_admin_permissions_operator_everything_watchdog_status_and_plain_promote_node_read_only():
    operator, watchdog, node = (PeerIdentity(1, role, "n") for role in ("operator", "watchdog", "node"))
    for command in ("promote", "degrade", "snapshot", "status", "depth", "something-new"):
        assert admin_refusal(operator, {"command": command, "force": True}) is None
    assert admin_refusal(watchdog, {"command": "promote"}) is None
    assert admin_refusal(watchdog, {"command": "status"}) is None
    assert "force" in admin_refusal(watchdog, {"command": "promote", "force": True})
    for command in ("degrade", "snapshot", "depth", "something-new"):
        assert admin_refusal(watchdog, {"command": command}) is not None
    for command in ("promote", "degrade", "snapshot"):
        assert admin_refusal(node, {"command": command}) is not None
    assert admin_refusal(node, {"command": "depth"}) is None
    assert admin_refusal(PeerIdentity(1, "member", "m"), {"command": "status"}) is not None
    assert admin_refusal(None, {"command": "degrade"}) is None  # TLS off: no identity to check


def test_peer_identity_takes_exactly_one_twinbook_uri():
    def cert(*uris):
        return {"subjectAltName": tuple(("URI", uri) for uri in uris) + (("DNS", "localhost"),)}

    assert peer_identity(cert("twinbook://cluster/3/node/a")) == PeerIdentity(3, "node", "a")
    assert peer_identity(cert("twinbook://cluster/3/node/a", "twinbook://cluster/1/operator/o")) is None
    assert peer_identity(cert("twinbook://cluster/x/node/a")) is None
    assert peer_identity(cert("twinbook://cluster/3/node")) is None
    assert peer_identity(cert("https://example.com/")) is None
    assert peer_identity(None) is None and peer_identity({}) is None


def test_the_refusal_log_logs_once_per_interval_and_counts_what_it_held_back():
    lines: list[str] = []
    now = [0.0]
    refusals = RefusalLog(lines.append, interval_seconds=10.0, clock=lambda: now[0])
    for port in range(100, 105):
        refusals.refused(("10.0.0.1", port), "replication connection from", "no certificate")
    refusals.refused(("10.0.0.2", 9), "replication connection from", "no certificate")
    refusals.refused(("10.0.0.1", 7), "replication connection from", "certificate has expired")
    assert len(lines) == 3 and "10.0.0.1:100" in lines[0], lines
    now[0] = 10.5
    refusals.refused(("10.0.0.1", 200), "replication connection from", "no certificate")
    assert len(lines) == 4 and "10.0.0.1:200" in lines[3] and "4 more from 10.0.0.1 not logged" in lines[3], lines
