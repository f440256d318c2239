"""Mutual TLS for the control plane (replication link, admin port) and TLS for members.

Who may speak where (certificates from replica/certs.py, one SAN URI each,
`twinbook://cluster/<id>/<role>/<name>`):

    port              server cert   client must present          then
    replication       node          node of this cluster         the link protocol
    admin             node          node, watchdog or operator   per command (ADMIN_PERMISSIONS)
                                    of this cluster
    client, feed      node          nothing (members log on      token logon (client port)
    (if tls.members)                with their token)

Both sides verify the chain against the cluster's CA file alone (not the system store), TLS
1.3 only, and then check the peer's URI: its cluster id must be ours and its role one the
port admits. Host names are not checked: the cluster binding is the URI, and nodes are
addressed by IP. A peer that fails any of this is cut before one byte of its application
data is read (the accept loop below does the handshake and the identity check before it
hands the connection to the port's handler), so no Hello, Ack, epoch or frame of an
unauthenticated peer is ever parsed.

Why an accept loop of its own instead of `asyncio.start_server(ssl=...)`: asyncio drops a
failed server-side handshake silently (a debug log at most, without the peer), and each
refusal must be logged with the peer's address. `loop.sock_accept` + 
`loop.connect_accepted_socket(ssl=...)` raise the handshake error where the address is
known. `RefusalLog` keeps this from becoming log spam: one line per (host, port kind,
reason), then at most one per REFUSAL_LOG_INTERVAL_SECONDS with the count suppressed since.

Handshakes in progress are bounded: HANDSHAKES_PER_PEER_MAX per peer host and HANDSHAKES_MAX
in all. A new connection over a bound evicts the oldest handshake in progress (of its own
host, or of the host holding the most), rather than being refused: a stranger holding silent
sockets for the handshake timeout then loses them to newcomers, while a real node, watchdog
or operator (whose handshake takes milliseconds) gets in, even from the same host. The
members' ports under `[tls] members = true` run the same loop (`MemberTlsServer`), so their
handshakes are bounded before the gateway's admission gate sees the connection.

Admin permissions (the rule is here, in one place):

    operator   every command (promote, promote --force, degrade, snapshot, status, depth, ...)
    watchdog   status, digests; promote without force (an automatic failover; forcing one is a
               human's call)
    node       status, digests, depth (read-only)
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from replica.certs import URI_PREFIX
from replica.errors import PeerRefusedError, TlsSetupError

HANDSHAKE_TIMEOUT_SECONDS = 5.0
REFUSAL_LOG_INTERVAL_SECONDS = 10.0
REFUSAL_KEYS_MAX = 4096
HANDSHAKES_MAX = 64
HANDSHAKES_PER_PEER_MAX = 16
STREAM_LIMIT_BYTES = 64 * 1024  # asyncio.start_server's default StreamReader limit

ADMIN_PERMISSIONS: dict[str, Optional[frozenset]] = {
    "operator": None,  # None: every command
    "watchdog": frozenset({"status", "digests", "promote"}),
    "node": frozenset({"status", "digests", "depth"}),
}
LINK_ROLES = frozenset({"node"})
ADMIN_ROLES = frozenset(ADMIN_PERMISSIONS)


@dataclass(frozen=True)
class PeerIdentity:
    cluster_id: int
    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role} {self.name} of cluster {self.cluster_id}"


@dataclass(frozen=True)
class TlsFiles:
    """The three PEM files of one holder: the cluster CA, its certificate, its key."""

    ca_file: str
    certificate_file: str
    key_file: str


def peer_identity(peer_certificate: Optional[dict]) -> Optional[PeerIdentity]:
    """The identity in a verified peer certificate (`getpeercert()`), None if it has none
    or more than one twinbook URI."""
    if not peer_certificate:
        return None
    uris = [value for kind, value in peer_certificate.get("subjectAltName", ()) if kind == "URI"
            and value.startswith(URI_PREFIX)]
    if len(uris) != 1:
        return None
    parts = uris[0][len(URI_PREFIX):].split("/")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2]:
        return None
    return PeerIdentity(int(parts[0]), parts[1], parts[2])


def identity_refusal(identity: Optional[PeerIdentity], cluster_id: int, roles: frozenset) -> Optional[str]:
    """Why this verified peer may not speak on a port admitting `roles` (None: it may)."""
    if identity is None:
        return "its certificate names no twinbook identity"
    if identity.cluster_id != cluster_id:
        return f"it is {identity}, not of cluster {cluster_id}"
    if identity.role not in roles:
        return f"it is {identity}; this port admits {', '.join(sorted(roles))} only"
    return None


def admin_refusal(identity: Optional[PeerIdentity], request: dict) -> Optional[str]:
    """Why this admin request may not be carried out for its sender (None: it may).
    `identity` None means TLS is off on this node: every request is carried out."""
    if identity is None:
        return None
    allowed = ADMIN_PERMISSIONS.get(identity.role, frozenset())
    command = request.get("command")
    if allowed is None:
        return None
    if command not in allowed:
        return f"{command!r} needs an operator certificate ({identity.role} may: {', '.join(sorted(allowed))})"
    if command == "promote" and request.get("force"):
        return "promote with force needs an operator certificate"
    return None


def _context(purpose: ssl.Purpose, files: TlsFiles, *, with_certificate: bool, verify_peer: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # the cluster binding is the URI, checked after the handshake
    context.verify_mode = ssl.CERT_REQUIRED if verify_peer else ssl.CERT_NONE
    needed = ([files.ca_file] if verify_peer else []) + ([files.certificate_file, files.key_file] if with_certificate else [])
    for path in needed:
        if not os.path.isfile(path):
            raise TlsSetupError(f"{path}: no such file (create the cluster's certificates with "
                                f"`twinbook certs init DIR`; see the [tls] table in replica/config.py)")
    try:
        if verify_peer:
            context.load_verify_locations(cafile=files.ca_file)
        if with_certificate:
            context.load_cert_chain(files.certificate_file, files.key_file)
    except (OSError, ssl.SSLError) as error:
        named = getattr(error, "filename", None) or f"{files.ca_file}, {files.certificate_file} or {files.key_file}"
        raise TlsSetupError(f"{named}: cannot load: {error}") from None
    return context


def mutual_server_context(files: TlsFiles) -> ssl.SSLContext:
    """Replication and admin servers: present our node certificate, require one of the CA."""
    return _context(ssl.Purpose.CLIENT_AUTH, files, with_certificate=True, verify_peer=True)


def mutual_client_context(files: TlsFiles) -> ssl.SSLContext:
    """Standby, watchdog, operator: present our certificate, require the server's of the CA."""
    return _context(ssl.Purpose.SERVER_AUTH, files, with_certificate=True, verify_peer=True)


def member_server_context(files: TlsFiles) -> ssl.SSLContext:
    """Client gateway and feed: present our node certificate, ask members for none (they
    authenticate by token, inside the encrypted session)."""
    return _context(ssl.Purpose.CLIENT_AUTH, files, with_certificate=True, verify_peer=False)


def member_client_context(ca_file: str) -> ssl.SSLContext:
    """A member's side: verify the node's certificate against the cluster CA file."""
    return _context(ssl.Purpose.SERVER_AUTH, TlsFiles(ca_file, "", ""), with_certificate=False, verify_peer=True)


def handshake_failure(error: BaseException) -> str:
    """A short reason for a failed handshake, for the refusal log."""
    if isinstance(error, asyncio.TimeoutError):
        return "no TLS handshake within the timeout"
    message = getattr(error, "verify_message", None) or getattr(error, "reason", None)
    return str(message or error or type(error).__name__)


class RefusalLog:
    """Logs each refused peer once, then at most once per interval per (host, port kind,
    reason), with how many refusals were not logged in between."""

    def __init__(self, log: Callable[[str], None], interval_seconds: float = REFUSAL_LOG_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._interval_seconds = interval_seconds
        self._clock = clock
        self._last: dict[tuple, list] = {}  # key -> [time logged, refusals since]

    def refused(self, address, where: str, reason: str) -> None:
        """`where` reads before the address: "replication connection from", ..."""
        host = address[0] if address else "?"
        port = address[1] if address and len(address) > 1 else "?"
        key = (host, where, reason)
        now = self._clock()
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self._interval_seconds:
            entry[1] += 1
            return
        if len(self._last) >= REFUSAL_KEYS_MAX:
            self._last.clear()  # a scan from many addresses: forget, rather than grow
        suppressed = entry[1] if entry is not None else 0
        self._last[key] = [now, 0]
        self._log(f"REFUSED {where} {host}:{port}: {reason}"
                  + (f" ({suppressed} more from {host} not logged since)" if suppressed else ""))


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Optional[PeerIdentity]], Awaitable[None]]


class BoundedTlsServer:
    """A TLS server's own accept loop with handshakes in progress bounded (see the module
    docstring); each subclass does the handshake (`_handshake`) and hands the connection
    over (`_handed_over`). The subset of asyncio.Server the nodes use."""

    def __init__(self, listener: socket.socket, context: ssl.SSLContext, *, where: str,
                 refusals: RefusalLog) -> None:
        self._listener = listener
        self._context = context
        self._where = where
        self._refusals = refusals
        self._closed = False
        self._connections: set[asyncio.Task] = set()
        # host -> its handshake tasks in progress, oldest first.
        self._handshaking: dict[str, list[asyncio.Task]] = {}
        self.handshakes_evicted = 0
        self._started: set[int] = set()  # id() of sockets whose _admit has begun
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    @property
    def sockets(self) -> tuple:
        return (self._listener,)

    def close(self) -> None:
        """Stop accepting (connections already handed over live on, as with asyncio.Server)."""
        if not self._closed:
            self._closed = True
            self._accepting.cancel()
            self._listener.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._accepting, return_exceptions=True)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                connection, address = await loop.sock_accept(self._listener)
            except OSError as error:
                if self._closed:
                    return
                # Out of descriptors and the like: keep the port open, try again shortly.
                self._refusals.refused(("?", "?"), self._where, f"accept failed: {error}")
                await asyncio.sleep(0.1)
                continue
            self._make_room(str(address[0]))
            task = loop.create_task(self._admit(connection, address))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
            # Evicted before its first step, _admit never ran: nothing else closes the socket.
            task.add_done_callback(lambda done, connection=connection: done.cancelled()
                                   and id(connection) not in self._started and connection.close())
            self._handshaking.setdefault(str(address[0]), []).append(task)

    @property
    def handshakes_in_progress(self) -> int:
        return sum(len(tasks) for tasks in self._handshaking.values())

    def _make_room(self, host: str) -> None:
        """Evict the oldest handshake in progress while a newcomer from host would exceed
        a bound (cancelling the task closes its socket)."""
        while True:
            mine = self._handshaking.get(host, [])
            if len(mine) >= HANDSHAKES_PER_PEER_MAX:
                victim_host = host
            elif self.handshakes_in_progress >= HANDSHAKES_MAX:
                victim_host = max(self._handshaking, key=lambda name: len(self._handshaking[name]))
            else:
                return
            victim = self._handshaking[victim_host][0]
            self._handshake_done(victim_host, victim)
            victim.cancel()
            self.handshakes_evicted += 1
            self._refusals.refused((victim_host, "?"), self._where, "evicted: too many TLS handshakes in progress")

    def _handshake_done(self, host: str, task) -> None:
        tasks = self._handshaking.get(host)
        if tasks is not None and task in tasks:
            tasks.remove(task)
            if not tasks:
                del self._handshaking[host]

    async def _admit(self, connection: socket.socket, address) -> None:
        self._started.add(id(connection))
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            handed_over = await self._handshake(connection)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, EOFError) as error:
            # The transport (which owns the socket) is closed by asyncio on failure.
            self._refusals.refused(address, self._where, handshake_failure(error))
            return
        finally:
            self._started.discard(id(connection))
            self._handshake_done(str(address[0]), asyncio.current_task())
        await self._handed_over(handed_over, address)

    async def _handshake(self, connection: socket.socket):
        raise NotImplementedError

    async def _handed_over(self, handed_over, address) -> None:
        raise NotImplementedError


class AuthenticatedServer(BoundedTlsServer):
    """Completes mutual TLS and checks the peer's identity before it runs
    `handle(reader, writer, identity)` (the replication and admin ports)."""

    def __init__(self, listener: socket.socket, handle: Handler, context: ssl.SSLContext, *, cluster_id: int,
                 roles: frozenset, where: str, refusals: RefusalLog) -> None:
        self._handle = handle
        self._cluster_id = cluster_id
        self._roles = roles
        super().__init__(listener, context, where=where, refusals=refusals)

    async def _handshake(self, connection: socket.socket):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT_BYTES)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, connection, ssl=self._context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
        )
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def _handed_over(self, handed_over, address) -> None:
        reader, writer = handed_over
        identity = peer_identity(writer.get_extra_info("peercert"))
        refusal = identity_refusal(identity, self._cluster_id, self._roles)
        if refusal is not None:
            self._refusals.refused(address, self._where, refusal)
            writer.transport.abort()
            return
        await self._handle(reader, writer, identity)


class MemberTlsServer(BoundedTlsServer):
    """The members' ports under `[tls] members = true` (client gateway, feed): TLS without
    client certificates, then `protocol_factory()`'s protocol gets the connection as from
    loop.create_server. Through this loop rather than create_server(ssl=...) so that the
    handshakes in progress are bounded before the port's own admission gate (which sees a
    connection only once its handshake is done)."""

    def __init__(self, listener: socket.socket, protocol_factory: Callable[[], asyncio.Protocol],
                 context: ssl.SSLContext, *, where: str, refusals: RefusalLog) -> None:
        self._protocol_factory = protocol_factory
        super().__init__(listener, context, where=where, refusals=refusals)

    async def _handshake(self, connection: socket.socket):
        return await asyncio.get_running_loop().connect_accepted_socket(
            self._protocol_factory, connection, ssl=self._context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
        )

    async def _handed_over(self, handed_over, address) -> None:
        return  # the protocol's connection_made has run: the connection is the port's


async def start_authenticated_server(handle: Handler, host: str, port: int, context: Optional[ssl.SSLContext], *,
                                     cluster_id: int, roles: frozenset, where: str, refusals: RefusalLog):
    """An AuthenticatedServer on host:port, or (context None: TLS off) a plain
    asyncio server whose handler gets identity None."""
    if context is None:
        return await asyncio.start_server(lambda reader, writer: handle(reader, writer, None), host, port)
    listener = socket.create_server((host, port), reuse_port=False)
    listener.setblocking(False)
    return AuthenticatedServer(listener, handle, context, cluster_id=cluster_id, roles=roles, where=where,
                               refusals=refusals)


async def open_authenticated_connection(address: tuple[str, int], context: Optional[ssl.SSLContext], *,
                                        cluster_id: Optional[int], roles: frozenset, timeout: float):
    """Dial address with mutual TLS and check the server's identity before returning
    (reader, writer, identity). Raises PeerRefusedError (the peer named) when the server
    fails the handshake or is not one of `roles` of `cluster_id` (None: any cluster).
    context None: plain TCP, identity None."""
    if context is None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
        return reader, writer, None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*address, ssl=context, server_hostname="", ssl_handshake_timeout=timeout),
            timeout,
        )
    except ssl.SSLError as error:
        raise PeerRefusedError(f"{address[0]}:{address[1]}: TLS handshake failed: {handshake_failure(error)}") from None
    identity = peer_identity(writer.get_extra_info("peercert"))
    refusal = identity_refusal(identity, identity.cluster_id if cluster_id is None and identity else cluster_id,
                               roles)
    if refusal is not None:
        writer.transport.abort()
        raise PeerRefusedError(f"{address[0]}:{address[1]}: refused: {refusal}")
    return reader, writer, identity


def default_certificates_directory() -> str:
    """Where the embedded defaults look for `twinbook certs init` files: $TWINBOOK_CERTS,
    else ./twinbook-certs."""
    return os.environ.get("TWINBOOK_CERTS") or "twinbook-certs"


class NodeTls:
    """One node's TLS: the contexts its [tls] table gives (all None with TLS off), the
    refusal log, and the servers and dials of the control plane built on them. Loading
    the files here, at start, makes a missing or unreadable one a start-up error."""

    def __init__(self, tls_config, cluster_id: int, log: Callable[[str], None], default_node: str = "a") -> None:
        self.cluster_id = cluster_id
        self.refusals = RefusalLog(log)
        self.server: Optional[ssl.SSLContext] = None
        self.client: Optional[ssl.SSLContext] = None
        self.members: Optional[ssl.SSLContext] = None
        if tls_config.enabled:
            files = tls_config.files(default_node)
            self.server = mutual_server_context(files)
            self.client = mutual_client_context(files)
            if tls_config.members:
                self.members = member_server_context(files)

    async def serve_members(self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int, *,
                            backlog: int, where: str):
        """A member port (client gateway, feed, FIX): plain create_server with TLS off for
        members, else a MemberTlsServer (handshakes in progress bounded)."""
        if self.members is None:
            return await asyncio.get_running_loop().create_server(protocol_factory, host, port, backlog=backlog)
        listener = socket.create_server((host, port), backlog=backlog)
        listener.setblocking(False)
        return MemberTlsServer(listener, protocol_factory, self.members, where=where, refusals=self.refusals)

    async def serve(self, handle: Handler, host: str, port: int, *, roles: frozenset, where: str):
        return await start_authenticated_server(handle, host, port, self.server, cluster_id=self.cluster_id,
                                                roles=roles, where=where, refusals=self.refusals)

    async def dial_node(self, address: tuple[str, int], timeout: float):
        """The replication link to a primary: it must show a node certificate of our
        cluster. A refusal is logged (rate-limited) and raised as PeerRefusedError."""
        try:
            reader, writer, _identity = await open_authenticated_connection(
                address, self.client, cluster_id=self.cluster_id, roles=LINK_ROLES, timeout=timeout,
            )
        except PeerRefusedError as error:
            self.refusals.refused(address, "replication link to the primary at", str(error).partition(": ")[2])
            raise
        return reader, writer


@dataclass(frozen=True)
class ClientCredentials:
    """An admin client's side of mutual TLS (watchdog, operator, or a node's certificate):
    the context, and the cluster its CA is for, so the node answering is checked to be a
    node of that very cluster."""

    context: ssl.SSLContext
    cluster_id: int

    @classmethod
    def load(cls, directory: str, holder: str) -> "ClientCredentials":
        """From a `twinbook certs init` DIRECTORY: ca.pem and HOLDER.pem/.key (operator,
        watchdog, node-a, ...)."""
        from cryptography import x509

        from replica.certs import cluster_of_authority

        files = TlsFiles(os.path.join(directory, "ca.pem"), os.path.join(directory, f"{holder}.pem"),
                         os.path.join(directory, f"{holder}.key"))
        context = mutual_client_context(files)
        with open(files.ca_file, "rb") as handle:
            cluster_id = cluster_of_authority(x509.load_pem_x509_certificate(handle.read()))
        return cls(context, cluster_id)
