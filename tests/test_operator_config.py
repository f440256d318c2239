"""The config file as msgspec Structs (issue 21): typos, unknown tables and wrong types
fail naming the file and key; the shipped examples load; tokens hash with scrypt and old
SHA-256 hashes still verify and are reported for rehash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from replica.config import (ConfigError, default_config, hash_token, load_config, parse_config, token_matches,
                            token_needs_rehash)
from tests.node_helpers import ROOT, twinbook_command

EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("text, message", [
    ("[node]\nclinet_port = 7801\n", "node.toml: node: unknown key clinet_port"),
    ("[limitz]\nsessions_max = 1\n", "node.toml: unknown key limitz"),
    ('[[members]]\nname = "X"\ntoken_hash = "sha256:00:00"\ncancel_on_disconnect = "false"\n',
     "node.toml: members[0].cancel_on_disconnect: expected `bool`, got `str`"),
    ('[node]\nclient_port = "7801"\n', "node.toml: node.client_port: expected `int`, got `str`"),
    ("[node]\nclient_port = 70000\n", "node.toml: node.client_port: expected `int` <= 65535"),
    ('[node]\ndurability = "sometimes"\n', "node.toml: node: durability must be one of always, interval, none"),
    ("[limits]\nsessions_max = 0\n", "node.toml: limits.sessions_max: expected `int` >= 1"),
    ('[[instruments]]\nsymbol = "A"\ntick = 1\n', "node.toml: instruments[0]: unknown key tick"),
    ('[[members]]\nname = "X"\ntoken_hash = "plain"\n', "node.toml: members[0]: token_hash must look like scrypt:"),
    ('[[members]]\nname = "X"\ntoken = "secret"\ntoken_hash = "sha256:00:00"\n', "plain `token`"),
    ("cluster_id = 18446744073709551616\n", "cluster_id must be a 64-bit unsigned integer"),
    ("[metrics]\nprot = 1\n", "node.toml: metrics: unknown key prot"),
])
def test_a_bad_config_fails_naming_the_file_and_key(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "node.toml")
    assert message in str(caught.value)


def test_every_existing_table_still_parses_and_absent_tables_take_defaults():
    config = parse_config(
        "cluster_id = 9\n[node]\nclient_port = 9001\nreplication = \"async\"\n[limits]\nsessions_max = 5\n"
        "[gateway]\nlogon_timeout_ms = 750\n[window]\nrecords_max = 10\n[multicast]\ngroup = \"239.1.2.3\"\n"
        "[tls]\nenabled = false\n[metrics]\nport = 0\n", "x.toml")
    assert (config.cluster_id, config.client_port, config.replication) == (9, 9001, "async")
    assert config.limits.sessions_max == 5 and config.gateway.logon_timeout_ms == 750
    assert config.window.records_max == 10 and config.multicast.group == "239.1.2.3"
    assert not config.tls.enabled and config.metrics.port == 0
    assert parse_config("").members == default_config().members  # the demo members
    assert parse_config("").metrics.host == "127.0.0.1"  # loopback unless told


@pytest.mark.parametrize("name", ["node.toml", "cluster/a.toml", "cluster/b.toml"])
def test_the_shipped_examples_load_and_their_tls_paths_are_anchored_beside_them(name):
    path = EXAMPLES / name
    config = load_config(str(path))
    assert config.tls.directory == str(path.parent / "certs")
    assert {member.name for member in config.members} == {"M1", "M2"}
    assert not any(token_needs_rehash(member.token_hash) for member in config.members)
    assert token_matches("example-M1-replace-me", config.member("M1").token_hash)


def test_the_two_node_set_has_distinct_ports_and_names():
    first, second = load_config(str(EXAMPLES / "cluster/a.toml")), load_config(str(EXAMPLES / "cluster/b.toml"))
    ports = lambda c: {c.client_port, c.feed_port, c.replication_port, c.admin_port, c.metrics.port}  # noqa: E731
    assert not ports(first) & ports(second)
    assert (first.tls.node, second.tls.node) == ("a", "b")


def test_scrypt_hashes_verify_and_old_sha256_hashes_verify_but_need_a_rehash():
    new = hash_token("s3cret")
    assert new.startswith("scrypt:14:8:1:") and not token_needs_rehash(new)
    assert token_matches("s3cret", new) and not token_matches("s3cret!", new)
    old = default_config().member("M1").token_hash
    assert token_needs_rehash(old) and token_matches("demo-M1", old) and not token_matches("demo-M2", old)


def test_config_check_reports_a_good_file_and_refuses_a_typo_in_one_line(tmp_path):
    good = subprocess.run(twinbook_command("config", "check", "--json", str(EXAMPLES / "node.toml")),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["client"] == "127.0.0.1:7701"
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\nclinet_port = 1\n")
    refused = subprocess.run(twinbook_command("config", "check", str(bad)), cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [f"twinbook: {bad}: node: unknown key clinet_port"]


def test_hash_token_reads_the_secret_from_stdin_not_the_command_line():
    result = subprocess.run(twinbook_command("hash-token", "--json"), input="tok-123\n", cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert token_matches("tok-123", json.loads(result.stdout)["token_hash"])
    assert subprocess.run(twinbook_command("hash-token", "tok-123"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60).returncode == 2  # no secret in argv
