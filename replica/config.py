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
    token_hash = "sha256:<salt hex>:<hex digest of salt + token>"
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
    [tls]                         # on by default, also when the table is absent
    enabled = true                # false: plain TCP everywhere (benchmark comparisons only)
    directory = "certs"           # a `twinbook certs init` directory (relative: to this file)
    node = "a"                    # this node's certificate there: node-a.pem, node-a.key
    ca_file = "certs/ca.pem"      # or name each file (relative: to this file); each
    certificate_file = "..."      #   overrides what directory + node would give
    key_file = "..."
    members = false               # TLS on the client gateway and the feed too

With TLS on, the replication link and the admin port take mutual TLS only (replica/tls.py
says who may speak where). The embedded defaults, and a config whose [tls] names no
directory, look in $TWINBOOK_CERTS, else ./twinbook-certs (relative to the working
directory); a node with no `node` name takes `a` as `twinbook primary` and `b` as
`twinbook standby` (the names `twinbook certs init` creates by default). `--certs DIR`
and `--node-name NAME` on the command line override both.
    [fix]                         # opt-in: absent means no FIX acceptor (replica/fix_session.py)
    port = 7709                   # FIX 4.4 order entry (with_ports: base + 8)
    comp_id = "TWINBOOK"          # our CompID (TargetCompID of the firms' messages)
    price_decimals = 2            # FIX prices are decimals of 10**-price_decimals units
    [fix.comp_ids]                # SenderCompID -> member (default: the member's own name)
    FIRM1 = "M1"

Tokens are never stored, only salted SHA-256 hashes (`hash_token`); tokens are long
random secrets, so a fast hash with a salt is enough, and the check compares in constant
time. The embedded demo members M1..M4 have the tokens `demo-M1` .. `demo-M4`; only M4
cancels its orders on disconnect.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Optional

from replica.errors import ReplicaError

DURABILITY_POLICIES = ("always", "interval", "none")
REPLICATION_MODES = ("sync", "async")


class ConfigError(ReplicaError):
    """A configuration file that cannot be used, named with the offending key."""


def hash_token(token: str, salt: Optional[bytes] = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.sha256(salt + token.encode()).hexdigest()
    return f"sha256:{salt.hex()}:{digest}"


def token_matches(token: str, token_hash: str) -> bool:
    try:
        scheme, salt_hex, digest = token_hash.split(":")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != "sha256":
        return False
    candidate = hashlib.sha256(salt + token.encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)


@dataclass(frozen=True)
class InstrumentConfig:
    symbol: str
    tick_size: int = 1
    lot_size: int = 1
    band_bps: int = 0
    reference_price: Optional[int] = None


@dataclass(frozen=True)
class MemberConfig:
    name: str
    token_hash: str
    cancel_on_disconnect: bool = True


@dataclass(frozen=True)
class Limits:
    messages_per_second: int = 20000
    burst_messages: int = 40000
    sessions_max: int = 1000
    feed_subscribers_max: int = 1000
    feed_buffer_bytes_max: int = 4 * 1024 * 1024
    session_buffer_bytes_max: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class GatewayConfig:
    logon_timeout_ms: int = 5000
    pending_logons_max: int = 64
    pending_logons_per_peer_max: int = 8
    sessions_per_member_max: int = 100
    subscribe_timeout_ms: int = 5000
    pending_subscribers_max: int = 64
    pending_subscribers_per_peer_max: int = 8
    logon_failure_delay_ms: int = 250
    logon_failure_delay_max_ms: int = 4000
    logon_failures_per_refusal: int = 10
    logon_refusal_ms: int = 60_000
    logon_failure_log_interval_ms: int = 10_000


def _check_table(table, where: str, settings_class) -> set[str]:
    """A config table that must be a table with only `settings_class`'s keys; its keys."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    known = set(settings_class.__dataclass_fields__)
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return known


def parse_gateway(table, source: str) -> GatewayConfig:
    """The [gateway] table: every key a positive integer, unknown keys refused."""
    where = f"{source}: gateway"
    known = _check_table(table, where, GatewayConfig)
    base = GatewayConfig()
    return GatewayConfig(**{name: _positive_int(table, name, where, getattr(base, name)) for name in sorted(known)})


@dataclass(frozen=True)
class MulticastConfig:
    group: str = "239.255.0.1"
    port: int = 7705
    interface: str = "127.0.0.1"
    ttl: int = 1
    retransmit_port: int = 7706
    packet_bytes_max: int = 1472
    heartbeat_interval_ms: int = 200
    window_messages: int = 100_000
    window_bytes_max: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = True
    directory: str = ""  # "": $TWINBOOK_CERTS, else ./twinbook-certs
    node: str = ""  # "": the command's default (a: primary, b: standby)
    ca_file: str = ""  # "": directory/ca.pem
    certificate_file: str = ""  # "": directory/node-<node>.pem
    key_file: str = ""  # "": directory/node-<node>.key
    members: bool = False

    def files(self, default_node: str = "a"):
        """The CA, certificate and key paths this table names (replica.tls.TlsFiles)."""
        from replica.tls import TlsFiles, default_certificates_directory

        directory = self.directory or default_certificates_directory()
        stem = os.path.join(directory, f"node-{self.node or default_node}")
        return TlsFiles(self.ca_file or os.path.join(directory, "ca.pem"),
                        self.certificate_file or stem + ".pem", self.key_file or stem + ".key")


@dataclass(frozen=True)
class FixConfig:
    port: int = 7709
    comp_id: str = "TWINBOOK"
    price_decimals: int = 2
    comp_ids: tuple[tuple[str, str], ...] = ()  # (SenderCompID, member)

    def member_for(self, sender_comp_id: str) -> str:
        for comp_id, member in self.comp_ids:
            if comp_id == sender_comp_id:
                return member
        return sender_comp_id


def parse_fix(table, source: str) -> FixConfig:
    """The [fix] table: port, our CompID, the price scale, SenderCompID -> member."""
    where = f"{source}: fix"
    _check_table(table, where, FixConfig)
    base = FixConfig()
    comp_id = table.get("comp_id", base.comp_id)
    if not isinstance(comp_id, str) or not comp_id or not (comp_id.isascii() and comp_id.isprintable()):
        raise ConfigError(f"{where}.comp_id must be a non-empty printable ASCII string, not {comp_id!r}")
    comp_ids = table.get("comp_ids", {})
    if not isinstance(comp_ids, dict) or not all(isinstance(value, str) for value in comp_ids.values()):
        raise ConfigError(f"{where}.comp_ids must be a table of SenderCompID = \"member\"")
    return FixConfig(
        port=_bounded_int(table, "port", where, base.port, 0, 65535),
        comp_id=comp_id,
        price_decimals=_bounded_int(table, "price_decimals", where, base.price_decimals, 0, 9),
        comp_ids=tuple(sorted(comp_ids.items())),
    )


@dataclass(frozen=True)
class NodeConfig:
    cluster_id: int = 1
    host: str = "127.0.0.1"
    client_port: int = 7701
    feed_port: int = 7702
    replication_port: int = 7703
    admin_port: int = 7704
    durability: str = "always"
    replication: str = "sync"
    interval_ms: int = 2
    snapshot_every_records: int = 100_000
    snapshot_every_seconds: int = 300
    snapshot_retention: int = 3
    limits: Limits = field(default_factory=Limits)
    instruments: tuple[InstrumentConfig, ...] = ()
    members: tuple[MemberConfig, ...] = ()
    multicast: Optional[MulticastConfig] = None
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    window: "WindowConfig" = field(default_factory=lambda: WindowConfig())
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
            fix = replace(fix, port=base_port + 8 if base_port else 0)
        if base_port == 0:
            return replace(self, client_port=0, feed_port=0, replication_port=0, admin_port=0, fix=fix)
        return replace(
            self, client_port=base_port, feed_port=base_port + 1,
            replication_port=base_port + 2, admin_port=base_port + 3, fix=fix,
        )


# Fixed salts keep the embedded defaults reproducible; real configs use random salts.
DEMO_INSTRUMENTS = (
    InstrumentConfig("AAPL", 1, 1, 1000, 19000),
    InstrumentConfig("MSFT", 1, 1, 1000, 42000),
    InstrumentConfig("TSLA", 5, 1, 2000, 25000),
    InstrumentConfig("BOND", 1, 100, 0, None),
)
# M1..M3 keep their orders when they disconnect (so `twinbook client place` leaves a
# resting order behind); M4 shows cancel-on-disconnect.
DEMO_MEMBERS = tuple(
    MemberConfig(name, hash_token(f"demo-{name}", salt=name.encode().ljust(16, b"\0")), name == "M4")
    for name in ("M1", "M2", "M3", "M4")
)


def default_config() -> NodeConfig:
    return NodeConfig(instruments=DEMO_INSTRUMENTS, members=DEMO_MEMBERS)


def _positive_int(table: dict, key: str, where: str, default: int, minimum: int = 1) -> int:
    value = table.get(key, default)
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{where}.{key} must be an integer >= {minimum}, not {value!r}")
    return value


def _bounded_int(table: dict, key: str, where: str, default: int, minimum: int, maximum: int, why: str = "") -> int:
    value = table.get(key, default)
    if type(value) is not int or not minimum <= value <= maximum:
        raise ConfigError(f"{where}.{key} must be an integer in {minimum}..{maximum}{why}, not {value!r}")
    return value


def parse_multicast(table, source: str) -> MulticastConfig:
    """The [multicast] table, every value checked (the group must be multicast, the
    interface a unicast IPv4 address, the packet bound a UDP payload size)."""
    where = f"{source}: multicast"
    _check_table(table, where, MulticastConfig)
    base = MulticastConfig()
    group = table.get("group", base.group)
    try:
        group_address = ipaddress.IPv4Address(group)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ConfigError(f"{where}.group must be an IPv4 address, not {group!r}") from None
    if not group_address.is_multicast:
        raise ConfigError(f"{where}.group {group} is not a multicast address (224.0.0.0/4)")
    interface = table.get("interface", base.interface)
    try:
        interface_address = ipaddress.IPv4Address(interface)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ConfigError(f"{where}.interface must be a local IPv4 address, not {interface!r}") from None
    if interface_address.is_multicast:
        raise ConfigError(f"{where}.interface {interface} is a multicast address; name a local interface address")
    return MulticastConfig(
        group=group,
        port=_bounded_int(table, "port", where, base.port, 1, 65535),
        interface=interface,
        ttl=_bounded_int(table, "ttl", where, base.ttl, 0, 255),
        retransmit_port=_bounded_int(table, "retransmit_port", where, base.retransmit_port, 0, 65535),
        packet_bytes_max=_bounded_int(table, "packet_bytes_max", where, base.packet_bytes_max, 64, 65507,
                                      " (a UDP payload)"),
        heartbeat_interval_ms=_bounded_int(table, "heartbeat_interval_ms", where, base.heartbeat_interval_ms, 10, 60_000),
        window_messages=_bounded_int(table, "window_messages", where, base.window_messages, 1, 10_000_000),
        window_bytes_max=_bounded_int(table, "window_bytes_max", where, base.window_bytes_max, 1024, 1 << 32),
    )


def parse_tls(table, source: str) -> TlsConfig:
    """The [tls] table; relative paths are kept as written (load_config anchors them)."""
    where = f"{source}: tls"
    known = _check_table(table, where, TlsConfig)
    values = {}
    for name in known:
        if name not in table:
            continue
        expected = bool if name in ("enabled", "members") else str
        if type(table[name]) is not expected:
            raise ConfigError(f"{where}.{name} must be a {'boolean' if expected is bool else 'string'}, "
                              f"not {table[name]!r}")
        values[name] = table[name]
    if "/" in values.get("node", ""):
        raise ConfigError(f"{where}.node must be a certificate name like \"a\", not a path")
    tls = TlsConfig(**values)
    if tls.members and not tls.enabled:
        raise ConfigError(f"{where}.members needs TLS enabled")
    return tls


def anchor_tls(tls: TlsConfig, base_directory: str) -> TlsConfig:
    """The [tls] paths of a config file made absolute against the file's directory."""
    def anchored(path: str) -> str:
        return path if not path or os.path.isabs(path) else os.path.join(base_directory, path)

    return replace(tls, directory=anchored(tls.directory), ca_file=anchored(tls.ca_file),
                   certificate_file=anchored(tls.certificate_file), key_file=anchored(tls.key_file))


def parse_config(text: str, source: str = "<config>") -> NodeConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    base = default_config()
    node = data.get("node", {})
    limits_table = data.get("limits", {})
    if not isinstance(node, dict) or not isinstance(limits_table, dict):
        raise ConfigError(f"{source}: [node] and [limits] must be tables")
    durability = node.get("durability", base.durability)
    if durability not in DURABILITY_POLICIES:
        raise ConfigError(f"{source}: node.durability must be one of {', '.join(DURABILITY_POLICIES)}, not {durability!r}")
    replication = node.get("replication", base.replication)
    if replication not in REPLICATION_MODES:
        raise ConfigError(f"{source}: node.replication must be one of {', '.join(REPLICATION_MODES)}, not {replication!r}")
    host = node.get("host", base.host)
    if not isinstance(host, str):
        raise ConfigError(f"{source}: node.host must be a string")
    default_limits = Limits()
    limits = Limits(**{
        name: _positive_int(limits_table, name, f"{source}: limits", getattr(default_limits, name))
        for name in default_limits.__dataclass_fields__
    })
    instruments = base.instruments
    if "instruments" in data:
        instruments = []
        for index, table in enumerate(data["instruments"]):
            where = f"{source}: instruments[{index}]"
            if not isinstance(table.get("symbol"), str):
                raise ConfigError(f"{where}.symbol must be a string")
            reference = table.get("reference_price")
            if reference is not None and (type(reference) is not int or reference <= 0):
                raise ConfigError(f"{where}.reference_price must be a positive integer")
            instruments.append(InstrumentConfig(
                table["symbol"],
                _positive_int(table, "tick_size", where, 1),
                _positive_int(table, "lot_size", where, 1),
                _positive_int(table, "band_bps", where, 0, minimum=0),
                reference,
            ))
        instruments = tuple(instruments)
    members = base.members
    if "members" in data:
        members = []
        for index, table in enumerate(data["members"]):
            where = f"{source}: members[{index}]"
            if not isinstance(table.get("name"), str) or not isinstance(table.get("token_hash"), str):
                raise ConfigError(f"{where} needs string name and token_hash (never a plain token)")
            if "token" in table:
                raise ConfigError(f"{where} has a plain `token`: store only `token_hash` (twinbook hash-token)")
            if not table["token_hash"].startswith("sha256:"):
                raise ConfigError(f"{where}.token_hash must look like sha256:<salt hex>:<digest hex>")
            members.append(MemberConfig(table["name"], table["token_hash"], bool(table.get("cancel_on_disconnect", True))))
        members = tuple(members)
    cluster_id = data.get("cluster_id", base.cluster_id)
    if type(cluster_id) is not int or not 0 <= cluster_id < 2**64:
        raise ConfigError(f"{source}: cluster_id must be a 64-bit unsigned integer")
    return NodeConfig(
        cluster_id=cluster_id,
        host=host,
        client_port=_positive_int(node, "client_port", f"{source}: node", base.client_port, 0),
        feed_port=_positive_int(node, "feed_port", f"{source}: node", base.feed_port, 0),
        replication_port=_positive_int(node, "replication_port", f"{source}: node", base.replication_port, 0),
        admin_port=_positive_int(node, "admin_port", f"{source}: node", base.admin_port, 0),
        durability=durability,
        replication=replication,
        interval_ms=_positive_int(node, "interval_ms", f"{source}: node", base.interval_ms),
        snapshot_every_records=_positive_int(node, "snapshot_every_records", f"{source}: node", base.snapshot_every_records),
        snapshot_every_seconds=_positive_int(node, "snapshot_every_seconds", f"{source}: node", base.snapshot_every_seconds),
        snapshot_retention=_positive_int(node, "snapshot_retention", f"{source}: node", base.snapshot_retention),
        limits=limits,
        instruments=instruments,
        members=members,
        multicast=parse_multicast(data["multicast"], source) if "multicast" in data else None,
        gateway=parse_gateway(data.get("gateway", {}), source),
        tls=parse_tls(data["tls"], source) if "tls" in data else TlsConfig(),
        window=parse_window(data.get("window", {}), source),
        fix=parse_fix(data["fix"], source) if "fix" in data else None,
    )


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


# ---------------------------------------------------------------- the in-flight window (issue 16)


@dataclass(frozen=True)
class WindowConfig:
    """The sync primary's in-flight window (replica.replication.InFlightWindow)."""

    records_max: int = 20_000
    bytes_max: int = 8 * 1024 * 1024


def parse_window(table, source: str) -> WindowConfig:
    """The [window] table: both bounds positive integers, unknown keys refused."""
    _check_table(table, f"{source}: window", WindowConfig)
    default = WindowConfig()
    return WindowConfig(
        records_max=_positive_int(table, "records_max", f"{source}: window", default.records_max),
        bytes_max=_positive_int(table, "bytes_max", f"{source}: window", default.bytes_max),
    )
