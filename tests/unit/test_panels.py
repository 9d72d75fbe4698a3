"""Grafana's variables as the report and the live dashboard test substitute them."""

from __future__ import annotations

from streams.panels import legend, rate_interval, substitute


def test_rate_interval_is_graphanas_rule() -> None:
    # max(step + scrape interval, 4 x scrape interval)
    assert rate_interval(step=2, scrape=1) == 4
    assert rate_interval(step=30, scrape=5) == 35
    assert rate_interval(step=1, scrape=5) == 20


def test_every_variable_and_its_braced_form() -> None:
    expr = (
        "rate(x[$__rate_interval]) + rate(y[${__interval}]) + increase(z[$__range])"
        " + $__interval_ms + $__range_s"
    )
    assert substitute(expr, step=2, scrape=1, range_seconds=600) == (
        "rate(x[4000ms]) + rate(y[2000ms]) + increase(z[600s]) + 2000 + 600"
    )


def test_legend_templates() -> None:
    assert legend("{{stage}} {{topic}}", {"stage": "router", "topic": "t"}) == "router t"
    assert legend("p95", {}) == "p95"
    assert legend("{{ status }} x", {"status": "ok"}) == "ok x"
    assert legend("{{status}}", {}) == "value"
