"""Check every PromQL query that ships outside the alert rules, with promtool.

Queries live in the Grafana dashboard, the prometheus-adapter rule and the KEDA trigger, where
no Prometheus tool looks at them. This script extracts them, fills in their template variables
(Grafana's `$__rate_interval`, `$job`; the adapter's `<<.Series>>`, `<<.LabelMatchers>>`,
`<<.GroupBy>>`), writes them as recording rules and runs `promtool check rules`, which parses
each expression. It also checks that:

- the dashboard still shows what operators rely on (the metrics in REQUIRED_METRICS, the
  p50/p95/p99 latency quantiles, and 4xx and 5xx separately);
- the adapter rule in k8s/prometheus-adapter/rules.yaml and values.yaml are the same.

Usage: python scripts/check_promql.py [--dashboard FILE] [--promtool PATH]
Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "prism.json"
ADAPTER_RULES = REPO / "k8s" / "prometheus-adapter" / "rules.yaml"
ADAPTER_VALUES = REPO / "k8s" / "prometheus-adapter" / "values.yaml"
KEDA_OBJECT = REPO / "k8s" / "components" / "keda" / "scaledobject.yaml"

REQUIRED_METRICS = (
    "prism_http_requests_total",
    "prism_http_request_duration_seconds_bucket",
    "prism_queue_depth",
    "prism_batch_size",
    "prism_unknown_user_requests_total",
    "prism_fallback_explanations_total",
    "prism_gpu_memory_used_bytes",
    "prism_gpu_memory_total_bytes",
)
REQUIRED_QUANTILES = ("0.5", "0.95", "0.99")

_GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
}


def _grafana_expr(expr: str) -> str:
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    # Template variables are used in regex matchers (`=~"$job"`): any regex is fine here.
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    dash = json.loads(path.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"dashboard panel {panel.get('title')!r}", target["expr"]))

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
            if m:  # label_values(<selector>, label) is Grafana's, not PromQL: check the selector
                found.append((f"dashboard variable {var.get('name')!r}", m.group(1)))
    return found


def _adapter_expr(rule: dict[str, Any]) -> str:
    series = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", rule["seriesQuery"].strip("'\""))
    if series is None:
        raise ValueError(f"adapter seriesQuery without a metric name: {rule['seriesQuery']}")
    query: str = rule["metricsQuery"]
    return (
        query.replace("<<.Series>>", series.group(0))
        .replace("<<.LabelMatchers>>", 'namespace="prism",pod=~"prism-.*"')
        .replace("<<.GroupBy>>", "pod")
    )


def adapter_queries() -> tuple[list[tuple[str, str]], list[str]]:
    rules = yaml.safe_load(ADAPTER_RULES.read_text(encoding="utf-8"))["rules"]
    values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))["rules"]
    problems = []
    if values.get("custom") != rules:
        problems.append(f"{ADAPTER_VALUES.name} rules.custom differs from {ADAPTER_RULES.name}")
    return [(f"adapter rule {r['name']['as']}", _adapter_expr(r)) for r in rules], problems


def keda_queries() -> list[tuple[str, str]]:
    doc = yaml.safe_load(KEDA_OBJECT.read_text(encoding="utf-8"))
    return [
        (f"KEDA trigger {i}", t["metadata"]["query"])
        for i, t in enumerate(doc["spec"]["triggers"])
        if t.get("type") == "prometheus"
    ]


def dashboard_coverage(queries: list[tuple[str, str]]) -> list[str]:
    text = "\n".join(expr for _, expr in queries)
    problems = [f"dashboard does not query {m}" for m in REQUIRED_METRICS if m not in text]
    latency = [e for _, e in queries if "prism_http_request_duration_seconds_bucket" in e]
    for q in REQUIRED_QUANTILES:
        if not any(re.search(rf"histogram_quantile\(\s*{re.escape(q)}\s*,", e) for e in latency):
            problems.append(f"dashboard has no p{float(q) * 100:g} of the request latency")
    for status in ('status=~"5.."', 'status=~"4.."'):
        if status not in text:
            problems.append(f"dashboard has no error series for {status}")
    return problems


def promtool_check(queries: list[tuple[str, str]], promtool: str) -> list[str]:
    rules = [
        {"record": f"prism:promql_check:{i}", "expr": expr} for i, (_, expr) in enumerate(queries)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
        proc = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
    if proc.returncode == 0:
        return []
    out = proc.stdout + proc.stderr
    problems = [f"promtool rejected a query:\n{out.strip()}"]
    for i, (where, expr) in enumerate(queries):
        if f'"prism:promql_check:{i}"' in out:
            problems.append(f"  {where}: {expr}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    args = parser.parse_args(argv)

    problems: list[str] = []
    try:
        raw = dashboard_queries(args.dashboard)
        adapter, adapter_problems = adapter_queries()
        keda = keda_queries()
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        print(f"ERROR cannot read the queries: {exc!r}", file=sys.stderr)
        return 1
    if not raw:
        problems.append(f"{args.dashboard}: no queries found")
    problems += dashboard_coverage(raw)
    problems += adapter_problems
    queries = [(w, _grafana_expr(e)) for w, e in raw] + adapter + keda
    problems += promtool_check(queries, args.promtool)

    for line in problems:
        print(f"ERROR {line}", file=sys.stderr)
    if problems:
        return 1
    print(f"ok: {len(queries)} PromQL queries parse (dashboard {len(raw)}, adapter, KEDA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
