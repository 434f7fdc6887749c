"""docker/grafana-dashboard.json and docker/prometheus-alerts.yml only use series /metrics exports,
and docs/operations.md explains every alert."""

from __future__ import annotations

import json
import re
from pathlib import Path

from billing.services.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
SERIES = re.compile(r"\bbilling_[a-z_]+")
HISTOGRAM_PARTS = ("_bucket", "_count", "_sum")


def _exported(name: str) -> bool:
    if name in METRIC_NAMES:
        return True
    return any(name.endswith(part) and name.removesuffix(part) in METRIC_NAMES for part in HISTOGRAM_PARTS)


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((ROOT / "docker" / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _alert_rules() -> list[tuple[str, str]]:
    text = (ROOT / "docker" / "prometheus-alerts.yml").read_text()
    return re.findall(r"- alert: (\w+)\n\s+expr: (.+)", text)


def test_every_dashboard_expression_reads_exported_series() -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    for expr in exprs:
        names = SERIES.findall(expr)
        assert names, expr
        assert all(_exported(name) for name in names), expr


def test_the_dashboard_shows_every_exported_series() -> None:
    shown = {name for expr in _dashboard_exprs() for name in SERIES.findall(expr)}
    base = {name.removesuffix(part) for name in shown for part in HISTOGRAM_PARTS if name.endswith(part)}
    assert not METRIC_NAMES - (shown | base)


def test_every_alert_reads_exported_series_and_is_explained() -> None:
    rules = _alert_rules()
    text = (ROOT / "docker" / "prometheus-alerts.yml").read_text()
    assert len(rules) == text.count("- alert:") >= 10
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name, expr in rules:
        names = SERIES.findall(expr)
        assert names, name
        assert all(_exported(series) for series in names), (name, expr)
        assert f"`{name}`" in operations, f"docs/operations.md does not explain {name}"


def test_prometheus_config_loads_the_alert_rules() -> None:
    config = (ROOT / "docker" / "prometheus.yml").read_text()
    assert "prometheus-alerts.yml" in config
    assert "metrics_path: /metrics" in config
