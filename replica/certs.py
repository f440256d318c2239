"""A cluster's certificates: its own CA and one certificate per node, watchdog and operator.

`create_cluster_certificates(directory, cluster_id, nodes)` (behind `twinbook certs init
DIR`) writes, with the `cryptography` package (ECDSA P-256 keys, SHA-256 signatures):

    DIR/ca.pem  ca.key                  the cluster's CA (path length 0: it signs leaves only)
    DIR/node-<name>.pem  node-<name>.key   one per node (primary or standby: roles swap on failover)
    DIR/watchdog.pem  watchdog.key
    DIR/operator.pem  operator.key

Keys are PKCS#8 PEM files created with mode 0600 (never readable by another user, even for
an instant: the mode is given to open(2), not set afterwards). An existing CA is never
overwritten: a second `init` into the same directory is an error.

A leaf certificate names its holder and binds it to the cluster with one SAN URI

    twinbook://cluster/<cluster id>/<role>/<name>       role: node | watchdog | operator

(replica/tls.py parses it back and checks the cluster id and the role, not merely "signed
by the CA"). The CA's subject also names the cluster (`twinbook cluster <id> CA`), so two
clusters' CAs are told apart by eye as well as by key. Node certificates carry both
serverAuth and clientAuth usages (a node serves the link as primary and dials it as
standby); watchdog and operator certificates are client-only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import Iterable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from replica.errors import ReplicaError

ROLES = ("node", "watchdog", "operator")
URI_PREFIX = "twinbook://cluster/"
VALIDITY_DAYS_DEFAULT = 825
# Issued this long before now, so that a clock a little behind the issuer's still accepts them.
BACKDATE = datetime.timedelta(minutes=5)


class CertificateCreationError(ReplicaError):
    """Certificates could not be written (the directory, or an existing CA, named)."""


def identity_uri(cluster_id: int, role: str, name: str) -> str:
    return f"{URI_PREFIX}{cluster_id}/{role}/{name}"


def file_stem(role: str, name: str) -> str:
    """The file name (without .pem/.key) of a holder's certificate: node-a, watchdog, operator."""
    return f"node-{name}" if role == "node" else name


@dataclass(frozen=True)
class Authority:
    """A CA's certificate and key, in memory, to sign leaves with."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cluster_id: int


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def create_authority(cluster_id: int, validity_days: int = VALIDITY_DAYS_DEFAULT) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"twinbook cluster {cluster_id} CA")])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key, cluster_id)


def issue(authority: Authority, role: str, name: str, *, not_before: Optional[datetime.datetime] = None,
          not_after: Optional[datetime.datetime] = None,
          validity_days: int = VALIDITY_DAYS_DEFAULT) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate for `role`/`name` of the authority's cluster, and its new key.

    `not_before`/`not_after` override the validity window (tests issue expired ones)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or "/" in name:
        raise ValueError(f"name {name!r} must be non-empty and without '/'")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    alternative_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(identity_uri(authority.cluster_id, role, name)),
    ]
    if role == "node":
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        alternative_names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, f"{role} {name}"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"twinbook cluster {authority.cluster_id}"),
        ]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - BACKDATE)
        .not_valid_after(not_after or now + datetime.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return certificate, key


def _write(path: str, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite (a CA key replaced under running nodes would be a new cluster).
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def write_pair(directory: str, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    """DIRECTORY/STEM.pem (0644) and DIRECTORY/STEM.key (0600)."""
    try:
        _write(os.path.join(directory, f"{stem}.key"), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
        ), 0o600)
        _write(os.path.join(directory, f"{stem}.pem"), certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    except FileExistsError as error:
        raise CertificateCreationError(f"{error.filename} exists; certificates are never overwritten") from None
    except OSError as error:
        raise CertificateCreationError(f"{error.filename or directory}: cannot write: {error.strerror}") from None


def create_cluster_certificates(directory: str, cluster_id: int, nodes: Iterable[str] = ("a", "b"),
                                validity_days: int = VALIDITY_DAYS_DEFAULT) -> list[str]:
    """The CA and the certificates of `nodes`, the watchdog and the operator, in `directory`
    (created 0700 if missing); returns the file stems written, CA first."""
    nodes = list(dict.fromkeys(nodes))
    if not nodes:
        raise CertificateCreationError("at least one node is needed")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as error:
        raise CertificateCreationError(f"{directory}: cannot create: {error.strerror}") from None
    if os.path.exists(os.path.join(directory, "ca.pem")) or os.path.exists(os.path.join(directory, "ca.key")):
        raise CertificateCreationError(f"{directory} already holds a CA; certificates are never overwritten")
    authority = create_authority(cluster_id, validity_days)
    write_pair(directory, "ca", authority.certificate, authority.key)
    stems = ["ca"]
    for role, name in [("node", node) for node in nodes] + [("watchdog", "watchdog"), ("operator", "operator")]:
        certificate, key = issue(authority, role, name, validity_days=validity_days)
        stem = file_stem(role, name)
        write_pair(directory, stem, certificate, key)
        stems.append(stem)
    return stems


def cluster_of_authority(certificate: x509.Certificate) -> int:
    """The cluster id a CA certificate of `create_authority` names in its subject."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    words = str(names[0].value).split() if names else []
    if len(words) != 4 or words[:2] != ["twinbook", "cluster"] or not words[2].isdigit():
        raise CertificateCreationError(f"CA subject {certificate.subject.rfc4514_string()} names no twinbook cluster")
    return int(words[2])


def load_authority(directory: str) -> Authority:
    """The CA of a `certs init` directory (to issue more certificates, e.g. in tests)."""
    try:
        with open(os.path.join(directory, "ca.pem"), "rb") as handle:
            certificate = x509.load_pem_x509_certificate(handle.read())
        with open(os.path.join(directory, "ca.key"), "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except OSError as error:
        raise CertificateCreationError(f"{error.filename}: cannot read: {error.strerror}") from None
    return Authority(certificate, key, cluster_of_authority(certificate))
