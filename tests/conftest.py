"""Session-wide fixtures: the cluster certificates every real-process test uses.

TLS is on in every node test, as in production; creating a CA and its certificates costs
some milliseconds, so it happens once per session (per cluster id), in a session temp
dir, not per test (tests/node_helpers.py `certificates`).
"""

from __future__ import annotations

import pytest

import node_helpers


@pytest.fixture(scope="session", autouse=True)
def cluster_certificates(tmp_path_factory):
    """The session's certificates root; cluster 1's are created at once."""
    node_helpers.CERTIFICATES_ROOT = tmp_path_factory.mktemp("certificates")
    return node_helpers.certificates(1)
