"""Node configuration: TOML, with embedded defaults that run a demo exchange on loopback.

A config file overrides any part of the defaults:

    cluster_id = 1
    [node]
    host = "127.0.0.1"
    client_port = 7701        # members' trading sessions
    feed_port = 7702          # market data
    replication_port = 7703   # the standby's link (replication issue)
    admin_port = 7704         # heartbeats, promote, snapshot take
    durability = "always"     # always | interval | none (none: tests and benchmarks only)
    replication = "sync"      # sync: acks wait for the standby's fsync once one attached | async
    interval_ms = 2
    snapshot_every_records = 100000
    snapshot_every_seconds = 300
    snapshot_retention = 3
    [limits]
    messages_per_second = 20000   # per member (all its sessions together), token bucket
    burst_messages = 40000
    sessions_max = 1000           # logged-on sessions (pending logons: [gateway])
    feed_subscribers_max = 1000   # subscribed connections (pending: [gateway])
    feed_buffer_bytes_max = 4194304   # a subscriber further behind is cut off
    session_buffer_bytes_max = 16777216
    [gateway]                     # defences of the trading and feed ports (replica/gateway.py)
    logon_timeout_ms = 5000       # a connection must log on within this
    pending_logons_max = 64       # connections not yet logged on, in all ...
    pending_logons_per_peer_max = 8   # ... and per peer address
    sessions_per_member_max = 100 # one member cannot take every one of sessions_max
    subscribe_timeout_ms = 5000   # the same three on the feed port, before a Subscribe
    pending_subscribers_max = 64
    pending_subscribers_per_peer_max = 8
    logon_failure_delay_ms = 250  # a failed logon holds its address's next attempt, doubling
    logon_failure_delay_max_ms = 4000
    logon_failures_per_refusal = 10   # every 10th failure refuses the address ...
    logon_refusal_ms = 60000      # ... for this long
    logon_failure_log_interval_ms = 10000   # failures logged once per peer per interval
    [[instruments]]
    symbol = "AAPL"
    tick_size = 1
    lot_size = 1
    band_bps = 1000
    reference_price = 19000
    [[members]]
    name = "M1"
    token_hash = "scrypt:14:8:1:<salt hex>:<digest hex>"   # twinbook hash-token
    cancel_on_disconnect = true
    [window]                      # sync mode: how far the journal may run past the standby
    records_max = 20000           # records journaled here and not yet durable there
    bytes_max = 8388608           # their frames' bytes; when either is reached the primary
                                  # stops reading client sockets until the standby acks
    [multicast]                   # opt-in: absent means no multicast feed
    group = "239.255.0.1"         # an IPv4 multicast group (224.0.0.0/4)
    port = 7705                   # the group's UDP port
    interface = "127.0.0.1"       # the local address whose interface sends (and joins)
    ttl = 1                       # hops a packet may travel (0: this host only)
    retransmit_port = 7706        # TCP retransmission server, on node.host
    packet_bytes_max = 1472       # UDP payload bound (Ethernet MTU less IP and UDP headers)
    heartbeat_interval_ms = 200   # a heartbeat after this long without a packet
    window_messages = 100000      # recent messages kept in memory for retransmission
    window_bytes_max = 33554432
    [metrics]                     # Prometheus text format on GET /metrics (replica/metrics.py)
    enabled = true
    host = "127.0.0.1"            # loopback by default: expose it deliberately
    port = 7707                   # 0: the kernel picks (written to DIR/node.json)
    [tls]                         # on by default, also when the table is absent
    enabled = true                # false: plain TCP everywhere (benchmark comparisons only)
    directory = "certs"           # a `twinbook certs init` directory (relative: to this file)
    node = "a"                    # this node's certificate there: node-a.pem, node-a.key
    ca_file = "certs/ca.pem"      # or name each file (relative: to this file); each
    certificate_file = "..."      #   overrides what directory + node would give
    key_file = "..."
    members = false               # TLS on the client gateway and the feed too
    [fix]                         # opt-in: absent means no FIX acceptor (replica/fix_session.py)
    port = 7709                   # FIX 4.4 order entry (with_ports: base + 8)
    comp_id = "TWINBOOK"          # our CompID (TargetCompID of the firms' messages)
    price_decimals = 2            # FIX prices are decimals of 10**-price_decimals units
    [fix.comp_ids]                # SenderCompID -> member (default: the member's own name)
    FIRM1 = "M1"

With TLS on, the replication link and the admin port take mutual TLS only (replica/tls.py
says who may speak where). The embedded defaults, and a config whose [tls] names no
directory, look in $TWINBOOK_CERTS, else ./twinbook-certs (relative to the working
directory); a node with no `node` name takes `a` as `twinbook primary` and `b` as
`twinbook standby` (the names `twinbook certs init` creates by default). `--certs DIR`
and `--node-name NAME` on the command line override both.

The file is decoded by msgspec into the Structs below (`ConfigFile` and its tables), with
`forbid_unknown_fields` and strict types: a typo (`clinet_port`), an unknown table
(`[limitz]`) or a string where a boolean belongs (`cancel_on_disconnect = "false"`) fails
with the file and the dotted key named (`node.toml: node: unknown key clinet_port`).
Copyable examples: examples/node.toml and the two-node set examples/cluster/{a,b}.toml;
`twinbook config check FILE` loads one and reports.

Tokens are never stored, only scrypt hashes (`hash_token`:
`scrypt:<log2 n>:<r>:<p>:<salt hex>:<digest hex>`, hashlib.scrypt), checked in constant
time. Hashes of the earlier scheme (`sha256:<salt hex>:<hex of sha256(salt + token)>`) are
still accepted and reported as needing a rehash (`token_needs_rehash`, `config check`).
A verified token is remembered (as its SHA-256) per hash, so a member's reconnects pay
scrypt once per process, not once per logon. The embedded demo members M1..M4 have the tokens `demo-M1` .. `demo-M4`; only M4
cancels its orders on disconnect.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Annotated, Optional

import msgspec

from replica.errors import ReplicaError

DURABILITY_POLICIES = ("always", "interval", "none")
REPLICATION_MODES = ("sync", "async")

Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class ConfigError(ReplicaError):
    """A configuration file that cannot be used, named with the offending key."""


# ---------------------------------------------------------------- member tokens

# scrypt cost: n = 2**14, r = 8, p = 1 (16 MiB, tens of milliseconds: the interactive
# setting of the scrypt paper), paid once per member per process thanks to _verified.
SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 1
_verified: dict[str, bytes] = {}


def _scrypt_hex(token: str, salt: bytes, log2_n: int, r: int, p: int) -> str:
    return hashlib.scrypt(token.encode(), salt=salt, n=1 << log2_n, r=r, p=p,
                          maxmem=256 * 1024 * 1024, dklen=32).hex()


def hash_token(token: str, salt: Optional[bytes] = None) -> str:
    """The scrypt hash of a member token, as stored in a config's token_hash."""
    salt = os.urandom(16) if salt is None else salt
    digest = _scrypt_hex(token, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt:{SCRYPT_LOG2_N}:{SCRYPT_R}:{SCRYPT_P}:{salt.hex()}:{digest}"


def token_needs_rehash(token_hash: str) -> bool:
    """True for hashes of the earlier salted SHA-256 scheme (still accepted)."""
    return token_hash.startswith("sha256:")


def _token_hash_problem(token_hash: str) -> Optional[str]:
    parts = token_hash.split(":")
    try:
        if parts[0] == "sha256" and len(parts) == 3:
            bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            return None
        if parts[0] == "scrypt" and len(parts) == 6:
            if not (1 <= int(parts[1]) <= 24 and 1 <= int(parts[2]) <= 64 and 1 <= int(parts[3]) <= 16):
                return "has scrypt parameters out of range"
            bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
            return None
    except ValueError:
        pass
    return "must look like scrypt:<log2 n>:<r>:<p>:<salt hex>:<digest hex> (twinbook hash-token)"


def token_matches(token: str, token_hash: str) -> bool:
    """Whether token hashes to token_hash (either scheme), compared in constant time."""
    if _token_hash_problem(token_hash) is not None:
        return False
    fingerprint = hashlib.sha256(token.encode()).digest()
    known = _verified.get(token_hash)
    if known is not None:
        return hmac.compare_digest(known, fingerprint)
    parts = token_hash.split(":")
    if parts[0] == "sha256":
        candidate, digest = hashlib.sha256(bytes.fromhex(parts[1]) + token.encode()).hexdigest(), parts[2]
    else:
        candidate = _scrypt_hex(token, bytes.fromhex(parts[4]), int(parts[1]), int(parts[2]), int(parts[3]))
        digest = parts[5]
    matched = hmac.compare_digest(candidate, digest)
    if matched:
        _verified[token_hash] = fingerprint
    return matched


# ---------------------------------------------------------------- the tables (msgspec Structs)


class _Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A config table: unknown keys are refused, types are strict."""


class InstrumentConfig(_Table):
    symbol: str
    tick_size: Positive = 1
    lot_size: Positive = 1
    band_bps: NonNegative = 0
    reference_price: Optional[Positive] = None


class MemberConfig(_Table):
    name: str
    token_hash: str
    cancel_on_disconnect: bool = True

    def __post_init__(self) -> None:
        problem = _token_hash_problem(self.token_hash)
        if problem is not None:
            raise ValueError(f"token_hash {problem}")


class Limits(_Table):
    messages_per_second: Positive = 20000
    burst_messages: Positive = 40000
    sessions_max: Positive = 1000
    feed_subscribers_max: Positive = 1000
    feed_buffer_bytes_max: Positive = 4 * 1024 * 1024
    session_buffer_bytes_max: Positive = 16 * 1024 * 1024


class GatewayConfig(_Table):
    logon_timeout_ms: Positive = 5000
    pending_logons_max: Positive = 64
    pending_logons_per_peer_max: Positive = 8
    sessions_per_member_max: Positive = 100
    subscribe_timeout_ms: Positive = 5000
    pending_subscribers_max: Positive = 64
    pending_subscribers_per_peer_max: Positive = 8
    logon_failure_delay_ms: Positive = 250
    logon_failure_delay_max_ms: Positive = 4000
    logon_failures_per_refusal: Positive = 10
    logon_refusal_ms: Positive = 60_000
    logon_failure_log_interval_ms: Positive = 10_000


class MulticastConfig(_Table):
    """[multicast]: the group must be multicast, the interface a unicast IPv4 address."""

    group: str = "239.255.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 7705
    interface: str = "127.0.0.1"
    ttl: Annotated[int, msgspec.Meta(ge=0, le=255)] = 1
    retransmit_port: Port = 7706
    packet_bytes_max: Annotated[int, msgspec.Meta(ge=64, le=65507)] = 1472  # a UDP payload
    heartbeat_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 200
    window_messages: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000
    window_bytes_max: Annotated[int, msgspec.Meta(ge=1024, le=1 << 32)] = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        try:
            group = ipaddress.IPv4Address(self.group)
        except (ipaddress.AddressValueError, ValueError):
            raise ValueError(f"group must be an IPv4 address, not {self.group!r}") from None
        if not group.is_multicast:
            raise ValueError(f"group {self.group} is not a multicast address (224.0.0.0/4)")
        try:
            interface = ipaddress.IPv4Address(self.interface)
        except (ipaddress.AddressValueError, ValueError):
            raise ValueError(f"interface must be a local IPv4 address, not {self.interface!r}") from None
        if interface.is_multicast:
            raise ValueError(f"interface {self.interface} is a multicast address; name a local interface address")


class MetricsConfig(_Table):
    """[metrics]: the Prometheus endpoint (replica/metrics.py); loopback unless told."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 7707


class TlsConfig(_Table):
    enabled: bool = True
    directory: str = ""  # "": $TWINBOOK_CERTS, else ./twinbook-certs
    node: str = ""  # "": the command's default (a: primary, b: standby)
    ca_file: str = ""  # "": directory/ca.pem
    certificate_file: str = ""  # "": directory/node-<node>.pem
    key_file: str = ""  # "": directory/node-<node>.key
    members: bool = False

    def __post_init__(self) -> None:
        if "/" in self.node:
            raise ValueError("node must be a certificate name like \"a\", not a path")
        if self.members and not self.enabled:
            raise ValueError("members needs TLS enabled")

    def files(self, default_node: str = "a"):
        """The CA, certificate and key paths this table names (replica.tls.TlsFiles)."""
        from replica.tls import TlsFiles, default_certificates_directory

        directory = self.directory or default_certificates_directory()
        stem = os.path.join(directory, f"node-{self.node or default_node}")
        return TlsFiles(self.ca_file or os.path.join(directory, "ca.pem"),
                        self.certificate_file or stem + ".pem", self.key_file or stem + ".key")


class FixConfig(_Table):
    """[fix] (opt-in): the FIX 4.4 acceptor's port, our CompID, the price scale and the
    SenderCompID -> member map (a firm's SenderCompID is the member's name by default)."""

    port: Port = 7709
    comp_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[!-~]+$")] = "TWINBOOK"
    price_decimals: Annotated[int, msgspec.Meta(ge=0, le=9)] = 2
    comp_ids: dict[str, str] = {}

    def member_for(self, sender_comp_id: str) -> str:
        return self.comp_ids.get(sender_comp_id, sender_comp_id)


class WindowConfig(_Table):
    """The sync primary's in-flight window (replica.replication.InFlightWindow)."""

    records_max: Positive = 20_000
    bytes_max: Positive = 8 * 1024 * 1024


class NodeTable(_Table):
    """[node]: this node's addresses, durability and snapshot cadence."""

    host: str = "127.0.0.1"
    client_port: Port = 7701
    feed_port: Port = 7702
    replication_port: Port = 7703
    admin_port: Port = 7704
    durability: str = "always"
    replication: str = "sync"
    interval_ms: Positive = 2
    snapshot_every_records: Positive = 100_000
    snapshot_every_seconds: Positive = 300
    snapshot_retention: Positive = 3

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY_POLICIES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_POLICIES)}, not {self.durability!r}")
        if self.replication not in REPLICATION_MODES:
            raise ValueError(f"replication must be one of {', '.join(REPLICATION_MODES)}, not {self.replication!r}")


class ConfigFile(_Table):
    """A whole config file; absent tables take their defaults (instruments and members:
    the demo ones; multicast: off)."""

    cluster_id: NonNegative = 1
    node: NodeTable = msgspec.field(default_factory=NodeTable)
    limits: Limits = msgspec.field(default_factory=Limits)
    instruments: Optional[tuple[InstrumentConfig, ...]] = None
    members: Optional[tuple[MemberConfig, ...]] = None
    multicast: Optional[MulticastConfig] = None
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    window: WindowConfig = msgspec.field(default_factory=WindowConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    fix: Optional[FixConfig] = None

    def __post_init__(self) -> None:
        if self.cluster_id >= 2**64:  # msgspec's bounds stop at int64
            raise ValueError("cluster_id must be a 64-bit unsigned integer")


# ---------------------------------------------------------------- the node's resolved config


_NODE_DEFAULTS = NodeTable()  # the one place [node]'s defaults are written


@dataclass(frozen=True)
class NodeConfig:
    """What a node runs with: [node] flattened (its defaults NodeTable's), the other
    tables as decoded."""

    cluster_id: int = 1
    host: str = _NODE_DEFAULTS.host
    client_port: int = _NODE_DEFAULTS.client_port
    feed_port: int = _NODE_DEFAULTS.feed_port
    replication_port: int = _NODE_DEFAULTS.replication_port
    admin_port: int = _NODE_DEFAULTS.admin_port
    durability: str = _NODE_DEFAULTS.durability
    replication: str = _NODE_DEFAULTS.replication
    interval_ms: int = _NODE_DEFAULTS.interval_ms
    snapshot_every_records: int = _NODE_DEFAULTS.snapshot_every_records
    snapshot_every_seconds: int = _NODE_DEFAULTS.snapshot_every_seconds
    snapshot_retention: int = _NODE_DEFAULTS.snapshot_retention
    limits: Limits = field(default_factory=Limits)
    instruments: tuple[InstrumentConfig, ...] = ()
    members: tuple[MemberConfig, ...] = ()
    multicast: Optional[MulticastConfig] = None
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    fix: Optional[FixConfig] = None

    def member(self, name: str) -> Optional[MemberConfig]:
        for member in self.members:
            if member.name == name:
                return member
        return None

    def with_ports(self, base_port: int) -> "NodeConfig":
        """The same config with the four ports at base_port .. base_port + 3 (and the
        FIX port, when configured, at base_port + 8).

        A base of 0 binds every port to 0, so the kernel picks four free ports (they are
        then written to DIR/node.json).
        """
        fix = self.fix
        if fix is not None:
            fix = msgspec.structs.replace(fix, port=base_port + 8 if base_port else 0)
        if base_port == 0:
            return replace(self, client_port=0, feed_port=0, replication_port=0, admin_port=0,
                           metrics=msgspec.structs.replace(self.metrics, port=0), fix=fix)
        # Nodes given port bases sit four ports apart, so the metrics port cannot follow
        # the base: the kernel picks it (DIR/node.json and the startup log name it).
        return replace(
            self, client_port=base_port, feed_port=base_port + 1,
            replication_port=base_port + 2, admin_port=base_port + 3,
            metrics=msgspec.structs.replace(self.metrics, port=0), fix=fix,
        )


# Fixed salts keep the embedded defaults reproducible; real configs use random salts.
# The demo hashes are the earlier SHA-256 scheme so that importing this module costs no
# scrypt work; `config check` of the embedded defaults reports them as needing a rehash.
DEMO_INSTRUMENTS = (
    InstrumentConfig("AAPL", 1, 1, 1000, 19000),
    InstrumentConfig("MSFT", 1, 1, 1000, 42000),
    InstrumentConfig("TSLA", 5, 1, 2000, 25000),
    InstrumentConfig("BOND", 1, 100, 0, None),
)


def _legacy_hash(token: str, salt: bytes) -> str:
    return f"sha256:{salt.hex()}:{hashlib.sha256(salt + token.encode()).hexdigest()}"


# M1..M3 keep their orders when they disconnect (so `twinbook client place` leaves a
# resting order behind); M4 shows cancel-on-disconnect.
DEMO_MEMBERS = tuple(
    MemberConfig(name, _legacy_hash(f"demo-{name}", name.encode().ljust(16, b"\0")), name == "M4")
    for name in ("M1", "M2", "M3", "M4")
)


def default_config() -> NodeConfig:
    return NodeConfig(instruments=DEMO_INSTRUMENTS, members=DEMO_MEMBERS)


def _validation_message(error: msgspec.ValidationError, source: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.node.client_port`" as
    "FILE: node.client_port: expected `int`, got `str`"."""
    text = str(error)
    message, _, location = text.rpartition(" - at `")
    if not message:
        message, location = text, "$`"
    path = location.rstrip("`").removeprefix("$").lstrip(".")
    where = f"{source}: {path}" if path else source
    unknown = message.removeprefix("Object contains unknown field ")
    if unknown != message:
        return f"{where}: unknown key {unknown.strip('`')}"
    return f"{where}: {message[0].lower()}{message[1:]}"


def parse_config(text: str, source: str = "<config>") -> NodeConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    for index, table in enumerate(data.get("members", ()) if isinstance(data.get("members"), list) else ()):
        if isinstance(table, dict) and "token" in table:
            raise ConfigError(f"{source}: members[{index}] has a plain `token`: store only `token_hash` "
                              "(twinbook hash-token)")
    try:
        decoded = msgspec.convert(data, ConfigFile, strict=True)
    except msgspec.ValidationError as error:
        raise ConfigError(_validation_message(error, source)) from None
    base = default_config()
    node = decoded.node
    return NodeConfig(
        cluster_id=decoded.cluster_id,
        **{name: getattr(node, name) for name in node.__struct_fields__},
        limits=decoded.limits,
        instruments=base.instruments if decoded.instruments is None else decoded.instruments,
        members=base.members if decoded.members is None else decoded.members,
        multicast=decoded.multicast,
        gateway=decoded.gateway,
        tls=decoded.tls,
        window=decoded.window,
        metrics=decoded.metrics,
        fix=decoded.fix,
    )


def anchor_tls(tls: TlsConfig, base_directory: str) -> TlsConfig:
    """The [tls] paths of a config file made absolute against the file's directory."""
    def anchored(path: str) -> str:
        return path if not path or os.path.isabs(path) else os.path.join(base_directory, path)

    return msgspec.structs.replace(
        tls, directory=anchored(tls.directory), ca_file=anchored(tls.ca_file),
        certificate_file=anchored(tls.certificate_file), key_file=anchored(tls.key_file))


def load_config(path: Optional[str]) -> NodeConfig:
    if path is None:
        return default_config()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror}") from None
    config = parse_config(text, path)
    return replace(config, tls=anchor_tls(config.tls, os.path.dirname(os.path.abspath(path))))
