"""A real Prometheus scraping the real server with the compose scrape config, and a Locust smoke run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.e2e


def _prometheus_config(target: str, tmp_path: Path) -> Path:
    """docker/prometheus/prometheus.yml with the service's compose address swapped for ours."""
    config = yaml.safe_load((REPO / "docker/prometheus/prometheus.yml").read_text())
    prism = next(job for job in config["scrape_configs"] if job["job_name"] == "prism")
    prism["static_configs"][0]["targets"] = [target]
    prism["scrape_interval"], prism["scrape_timeout"] = "1s", "900ms"
    config["global"]["evaluation_interval"] = "1s"
    config["scrape_configs"] = [prism]
    config["rule_files"] = [str(REPO / "docker/prometheus/rules/prism-alerts.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _query(base: str, promql: str) -> list[dict]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_real_prometheus_scrapes_the_prism_series(live_server, tmp_path):
    httpx.post(
        f"{live_server.base_url}/v1/explanations",
        json={
            "user_id": "user-1",
            "history": ["Alien (1979)"],
            "recommended_item": "Aliens (1986)",
        },
        timeout=30,
    ).raise_for_status()
    port = free_port()
    config = _prometheus_config(live_server.base_url.removeprefix("http://"), tmp_path)
    check = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, found = time.monotonic() + 60, {}
        wanted = [
            "prism_http_requests_total",
            "prism_http_request_duration_seconds_bucket",
            "prism_model_info",
            "prism_ready",
        ]
        while time.monotonic() < deadline and len(found) < len(wanted):
            time.sleep(1)
            try:
                up = _query(base, 'up{job="prism"}')
                if not up or up[0]["value"][1] != "1":
                    continue
                for name in wanted:
                    result = _query(base, name)
                    if result:
                        found[name] = result
            except httpx.HTTPError:
                continue
        assert set(found) == set(wanted), (
            found.keys(),
            (tmp_path / "prometheus.log").read_text()[-2000:],
        )
        routes = {r["metric"]["route"] for r in found["prism_http_requests_total"]}
        assert "/v1/explanations" in routes
        assert found["prism_model_info"][0]["metric"]["provider"] == "cpu"
        rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) > 0  # the alert rules loaded
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_locust_smoke_run_passes_its_slo_gate(live_server, tiny_store, tmp_path):
    env = {
        **os.environ,
        "PRISM_LOAD_SHAPE": "",
        "PRISM_LOADTEST_KNOWN_USERS": ",".join(tiny_store.known_users),
        "PRISM_LOADTEST_MAX_NEW_TOKENS": "16",
        "PRISM_SLO_P95_MS": "5000",
        "PRISM_SLO_P99_MS": "10000",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            "loadtests/locustfile.py",
            "--headless",
            "--host",
            live_server.base_url,
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "20s",
            "--csv",
            str(tmp_path / "smoke"),
            "--html",
            str(tmp_path / "smoke.html"),
            "--only-summary",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    summary = [line for line in output.splitlines() if line.startswith("prism-loadtest:")]
    assert summary and summary[-1].rstrip().endswith("PASS"), output[-2000:]
    assert (tmp_path / "smoke_stats.csv").exists() and (tmp_path / "smoke.html").exists()
