"""compose/prometheus/alerts.yml has the seed's eight alerts, and every alert has promtool
unit tests in compose/prometheus/tests/ where it fires and where it stays silent.

(`make test-rules` runs those promtool tests; this checks that none is missing.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "compose" / "prometheus" / "alerts.yml"
TESTS = sorted((ROOT / "compose" / "prometheus" / "tests").glob("*.yml"))

SEED_ALERTS = {
    "AlbumAssemblyLagHigh",
    "AlbumAssemblyLagCritical",
    "AlbumItemsCountMismatch",
    "AlbumAssemblerNoActivity",
    "AlbumStateBacklogHigh",
    "AlbumAssemblyRateLow",
    "AlbumAssemblyErrorRateHigh",
    "AlbumAggregationDurationHigh",
}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_cases() -> list[dict[str, Any]]:
    cases = []
    for path in TESTS:
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../alerts.yml"], path
        for test in doc["tests"]:
            cases += test.get("alert_rule_test", [])
    return cases


def test_the_seed_alerts_are_there_with_its_lag_thresholds() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(alerts) >= SEED_ALERTS
    assert alerts["AlbumAssemblyLagHigh"]["expr"].strip().endswith("> 300")
    assert alerts["AlbumAssemblyLagHigh"]["labels"]["severity"] == "warning"
    assert alerts["AlbumAssemblyLagCritical"]["expr"].strip().endswith("> 600")
    assert alerts["AlbumAssemblyLagCritical"]["labels"]["severity"] == "critical"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def test_every_alert_is_tested_firing_and_silent() -> None:
    names = {r["alert"] for r in rules() if "alert" in r}
    fires = {c["alertname"] for c in alert_cases() if c.get("exp_alerts")}
    silent = {c["alertname"] for c in alert_cases() if not c.get("exp_alerts")}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"
    assert (fires | silent) <= names, "tests of alerts that do not exist"
