"""The Prometheus endpoint (issue 21): a scrape of /metrics on a primary and its standby
after a short load carries every family with plausible values."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from replica.protocol import RequestRejected
from statemachine.events import OrderAccepted
from tests.node_helpers import cluster, close_all, connect, run, wait_caught_up, wait_until  # noqa: F401 - fixture


def scrape(node) -> dict[str, list]:
    """{family name: [(labels, value), ...]} from the node's /metrics (address in node.json)."""
    host, port = json.loads((node.data_dir / "node.json").read_text())["metrics"]
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = [(sample.labels, sample.value) for sample in family.samples]
    return families


def value(families: dict, name: str, **labels) -> float:
    matches = [sample_value for sample_labels, sample_value in families[name] if sample_labels == labels]
    assert len(matches) == 1, (name, labels, families.get(name))
    return matches[0]


def test_a_scrape_after_a_short_load_has_every_metric_with_plausible_values(cluster):
    primary = cluster.primary(limits={"messages_per_second": 20, "burst_messages": 20})
    standby = cluster.standby("standby", primary.replication)

    async def load():
        client = await connect(primary, "M1")
        try:
            answers = await asyncio.gather(*(client.send_place(f"m-{i}", "AAPL", "buy", "limit", 1, price=18000 + i)
                                             for i in range(40)))
            return (sum(type(answer) is OrderAccepted for answer in answers),
                    sum(type(answer) is RequestRejected and answer.reason == "throttled" for answer in answers))
        finally:
            await close_all(client)

    accepted, throttled = run(load())
    assert accepted >= 20 and throttled >= 10
    wait_caught_up(primary, standby)
    families = scrape(primary)
    assert value(families, "twinbook_role", role="primary") == 1 and value(families, "twinbook_role", role="standby") == 0
    assert value(families, "twinbook_epoch") == primary.status()["epoch"]
    assert value(families, "twinbook_sequence", kind="durable") >= accepted
    assert value(families, "twinbook_sequence", kind="applied") == value(families, "twinbook_sequence", kind="sequenced")
    assert value(families, "twinbook_standby_attached") == 1
    assert value(families, "twinbook_replication_lag_records") == 0  # caught up above
    assert value(families, "twinbook_gateway_rejects", reason="throttled") == throttled
    assert value(families, "twinbook_throttles") == throttled
    assert value(families, "twinbook_sessions") == 0 and value(families, "twinbook_subscribers") == 0
    assert value(families, "twinbook_logon_failures") == 0
    assert value(families, "twinbook_clients_paused") == 0
    wait_until(lambda: value(scrape(standby), "twinbook_sequence", kind="durable")
               == value(families, "twinbook_sequence", kind="durable"), what="standby durable")
    on_standby = scrape(standby)
    assert value(on_standby, "twinbook_role", role="standby") == 1
    assert value(on_standby, "twinbook_primary_connected") == 1
    assert 0 <= value(on_standby, "twinbook_primary_beat_age_ms") < 10_000
    assert value(on_standby, "twinbook_replication_lag_records") == 0


def test_the_metrics_port_answers_only_get_metrics(cluster):
    primary = cluster.primary()
    host, port = json.loads((primary.data_dir / "node.json").read_text())["metrics"]
    assert host == "127.0.0.1"  # loopback unless told
    try:
        urllib.request.urlopen(f"http://{host}:{port}/other", timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 404
    else:
        raise AssertionError("/other answered 200")


def test_the_grafana_dashboard_queries_only_metrics_the_nodes_serve():
    import re
    from pathlib import Path

    import replica.metrics

    dashboard = json.loads((Path(__file__).resolve().parent.parent / "docs/grafana/twinbook.json").read_text())
    served = set(re.findall(r'"(twinbook_[a-z_]+)"', Path(replica.metrics.__file__).read_text()))
    queried = {re.sub(r"_total$", "", name) for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"twinbook_[a-z_]+", target["expr"])}
    assert queried and queried <= served, queried - served
