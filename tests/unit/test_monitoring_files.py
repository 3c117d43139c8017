"""docs/prometheus-alerts.yml and docs/grafana-dashboard.json: valid files that use
only the metrics (and labels) the server really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from callfs_adapters.metrics import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
METRIC_NAME = re.compile(r"\b(callfs_[a-z0-9_]+)\b")
LABEL_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}


def exported() -> dict[str, set[str]]:
    """Every series name the server exports -> its label names."""
    names: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = set(metric._labelnames)
        base = metric._name
        if metric._type == "counter":
            names[f"{base}_total"] = labels
        elif metric._type == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                names[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            names[base] = labels
    return names


EXPORTED = exported()


def check_expression(expr: str, extra_metrics: frozenset[str] = frozenset()) -> set[str]:
    """Assert ``expr`` is balanced and names only exported series with their own
    labels; return the series it uses."""
    assert expr.count("(") == expr.count(")"), expr
    assert expr.count("{") == expr.count("}"), expr
    used = set(METRIC_NAME.findall(expr))
    for name in used:
        assert name in EXPORTED, f"{name} is not exported by the server"
    for name, matchers in SELECTOR.findall(expr):
        if name in ("by", "without") or name in extra_metrics:
            continue
        assert name in EXPORTED, f"{name} is not exported by the server"
        consumed = "".join(m.group(0) for m in LABEL_MATCHER.finditer(matchers))
        assert consumed.strip() == matchers.strip(), f"cannot read matchers {matchers!r}"
        for label, _, _ in LABEL_MATCHER.findall(matchers):
            assert label in EXPORTED[name] | TARGET_LABELS, f"{name} has no label {label}"
    return used


def test_exported_names_cover_every_family() -> None:
    assert "callfs_http_requests_total" in EXPORTED
    assert EXPORTED["callfs_http_request_duration_seconds_bucket"] == {"method", "path", "le"}
    assert "callfs_active_locks" in EXPORTED
    assert not any(name.startswith("callfs_proxy") for name in EXPORTED)  # api.md §5 only


# --------------------------------------------------------------------------- alerts


@pytest.fixture(scope="module")
def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    assert set(document) == {"groups"}
    rules: list[dict[str, Any]] = []
    names = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert isinstance(group["name"], str) and group["name"] not in names
        names.add(group["name"])
        assert group["rules"], group["name"]
        rules += group["rules"]
    return rules


def test_alert_rules_are_well_formed(alert_rules: list[dict[str, Any]]) -> None:
    seen = set()
    for rule in alert_rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        name = rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert name not in seen
        seen.add(name)
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
        if "for" in rule:
            assert DURATION.match(rule["for"]), (name, rule["for"])
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert {"summary", "description"} <= set(annotations), name
        for text in annotations.values():
            assert text.count("{{") == text.count("}}"), (name, text)
        check_expression(rule["expr"], frozenset({"up"}))


def test_required_alerts_exist(alert_rules: list[dict[str, Any]]) -> None:
    by_name = {rule["alert"]: rule["expr"] for rule in alert_rules}
    assert {
        "CallFSInstanceDown",
        "CallFSHigh5xxRate",
        "CallFSHighLatencyP99",
        "CallFSLockTimeouts",
        "CallFSBackendUnavailable",
    } <= set(by_name)
    assert "up{" in by_name["CallFSInstanceDown"]
    assert 'status_code=~"5.."' in by_name["CallFSHigh5xxRate"]
    assert "histogram_quantile(0.99" in by_name["CallFSHighLatencyP99"]
    assert 'status="timeout"' in by_name["CallFSLockTimeouts"]
    assert "BACKEND_UNAVAILABLE" in by_name["CallFSBackendUnavailable"]


# --------------------------------------------------------------------------- dashboard


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return loaded


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            check_expression(target["expr"].replace("$__rate_interval", "5m"))


def test_dashboard_shows_what_operators_need(dashboard: dict[str, Any]) -> None:
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    text = "\n".join(exprs)
    used = set(METRIC_NAME.findall(text))
    # Every exported family appears somewhere.
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in EXPORTED}
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert families == shown
    assert "sum by (path) (rate(callfs_http_requests_total" in text
    assert 'status_code=~"5.."' in text
    for quantile in ("0.5", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, path) (rate(" in text
    assert (
        'callfs_lock_operation_duration_seconds_bucket{instance=~"$instance",operation="acquire"}'
        in text
    )
