"""Prometheus metrics from the counters every server already keeps, read at scrape
time (nothing is added to a hot path), in prometheus-client's exposition format.

    netkit_dns_datagrams_in_total{server="dns"} 1234
    netkit_relay_flows{server="relay"} 17           # a gauge: declared in ServerSpec.gauges

A server may also offer `labelled()` (counters broken down by one bounded label, as
the resolver's answers by RCODE) and `histograms()` (netkit/histogram.py). Labels are
bounded: the server's name, and such fixed sets (never a client address).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

_NAME = re.compile(r"[^a-zA-Z0-9_]")


class ServersCollector:
    """Each server's `counters()`, as counters or gauges (`ServerSpec.gauges`)."""

    def __init__(self, servers: Iterable[Any]) -> None:
        self.servers = list(servers)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("netkit_server_up", "1 while the server runs",
                               labels=["server"])
        for s in self.servers:
            if s.service is None:
                continue
            name = s.spec.name
            up.add_metric([name], 1)
            for key, value in sorted(s.service.counters().items()):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                metric = f"netkit_{name}_{_NAME.sub('_', key)}"
                help_text = f"{name}: {key.replace('_', ' ')}"
                if key in s.spec.gauges:
                    family: Metric = GaugeMetricFamily(metric, help_text, labels=["server"])
                else:
                    family = CounterMetricFamily(metric, help_text, labels=["server"])
                family.add_metric([name], value)
                yield family
            labelled = getattr(s.service, "labelled", None)
            for key, spec in (labelled() if labelled else {}).items():
                label, values = spec[0], spec[1]
                kind = GaugeMetricFamily if spec[2:] == ("gauge",) else CounterMetricFamily
                family = kind(f"netkit_{name}_{_NAME.sub('_', key)}",
                              f"{name}: {key.replace('_', ' ')} by {label}",
                              labels=["server", label])
                for value_name, value in values.items():
                    family.add_metric([name, value_name], value)
                yield family
            histograms = getattr(s.service, "histograms", None)
            for key, h in (histograms() if histograms else {}).items():
                hist = HistogramMetricFamily(f"netkit_{name}_{_NAME.sub('_', key)}",
                                             f"{name}: {key.replace('_', ' ')}",
                                             labels=["server"])
                hist.add_metric([name], h.buckets(), sum_value=h.sum)
                yield hist
        yield up


def render(servers: Iterable[Any]) -> bytes:
    """The exposition text for these servers and this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServersCollector(servers))  # type: ignore[arg-type]
    ProcessCollector(namespace="netkit", registry=registry)
    return generate_latest(registry)
