"""The real server under abuse, failure, overload and hot swaps (the tiny real model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks import hot_swap, overload
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.e2e

GOOD = {
    "user_id": "user-1",
    "history": ["Alien (1979)"],
    "recommended_item": {"title": "Aliens (1986)", "attributes": {"genres": ["Action"]}},
}
POISON = [
    b'{"user_id":"u","recommended_item":{"title":"Heat","attributes":{"year":NaN}}}',
    b'{"user_id":"u","recommended_item":{"title":"Heat","attributes":{"year":Infinity}}}',
    b'{"user_id":"u","recommended_item":{"title":"Heat","attributes":{"year":"\xc2\xb2"}}}',
    b'{"user_id":"u","recommended_item":{"title":"Heat","attributes":{"director":"\\ud800"}}}',
    b'{"user_id":"u","recommended_item":{"title":"He\\ud800at"}}',
    b'{"user_id":"u","recommended_item":{"title":"Heat","attributes":{"year":"'
    + b"9" * 5000
    + b'"}}}',
]


def test_poison_requests_get_422_and_the_replica_stays_ready(live_server):
    url = live_server.base_url
    for body in POISON:
        response = httpx.post(
            f"{url}/v1/explanations",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 422, (body[:80], response.text)
        assert response.json()["error"]["param"].startswith("recommended_item")
    assert httpx.post(f"{url}/v1/explanations", json=GOOD, timeout=30).status_code == 200
    for _ in range(3):
        assert httpx.get(f"{url}/readyz").status_code == 200


def test_unreadable_and_over_deep_bodies_are_400_with_the_error_body(live_server):
    url = f"{live_server.base_url}/v1/explanations"
    headers = {"content-type": "application/json"}
    bad_utf8 = httpx.post(url, content=b'{"user_id": "\xff\xfe"}', headers=headers)
    deep = httpx.post(url, content=b"[" * 100_000 + b"]" * 100_000, headers=headers)
    for response in (bad_utf8, deep):
        assert response.status_code in (400, 413, 422), response.text
        assert set(response.json()["error"]) == {"type", "message", "param"}


def test_a_model_that_cannot_load_ends_the_process_with_code_3(tmp_path):
    env = {
        **os.environ,
        "PRISM_STORE_DIR": str(tmp_path / "no-store"),
        "PRISM_MODEL_NAME": "prism-movies",
    }
    started = time.monotonic()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
        "--host", "127.0.0.1", "--port", str(free_port()),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "cannot load model prism-movies@production" in done.stderr
    assert time.monotonic() - started < 60


def test_hot_swap_under_load_loses_no_request_and_refuses_a_corrupt_version(tiny_store, tmp_path):
    code = hot_swap.main(
        [
            "--store", str(tiny_store.store_dir), "--name", tiny_store.name,
            "--swaps", "3", "--seconds", "1.5", "--clients", "4",
            "--port", str(free_port()), "--out", str(tmp_path),
        ]
    )  # fmt: skip
    result = json.loads((tmp_path / "hot_swap.json").read_text())
    assert code == 0, result
    assert result["statuses"].get("200", 0) > 0 and set(result["statuses"]) == {"200"}
    assert [r["result"]["status"] for r in result["reloads"]] == ["swapped"] * 3
    assert result["reloads"][-1]["to"] == result["original"]  # the rollback
    assert result["refused"]["status"] == 409
    assert result["served_after"] == result["original"]
    assert result["last_reload"]["status"] == "refused"
    assert "IntegrityError" in result["last_reload"]["error"]
    assert len(result["versions_seen"]) == 3


def test_the_overload_benchmark_runs_and_every_503_says_when_to_retry(tiny_store, tmp_path):
    code = overload.main(
        [
            "--store", str(tiny_store.store_dir), "--name", tiny_store.name,
            "--port", str(free_port()), "--seconds", "3", "--probe-seconds", "1.5",
            "--levels", "2,8", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    (report,) = tmp_path.glob("overload-*.json")
    result = json.loads(report.read_text())
    assert result["saturation_rps"] > 0 and result["sent"] > 0
    assert result["missing_retry_after_503"] == 0
    assert result["other_5xx"] == 0 and result["connection_errors"] == 0
    assert result["healthz_samples"] > 0 and result["healthz_failures"] == 0


def test_schemathesis_finds_no_server_error_in_1000_cases(live_server, tmp_path):
    """Every operation, fuzzed. The deadline header is left out of the fuzzing: a short
    deadline on a busy machine is a legitimate 503, which this check would call a server
    error (the header has its own tests)."""
    spec = httpx.get(f"{live_server.base_url}/openapi.json").json()
    for operation in (o for path in spec["paths"].values() for o in path.values()):
        operation["parameters"] = [
            p for p in operation.get("parameters", []) if p["name"] != "X-Request-Timeout-Ms"
        ]
    schema_file = tmp_path / "openapi.json"
    schema_file.write_text(json.dumps(spec))
    report = tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", str(schema_file),
        "--url", live_server.base_url,
        "--checks", "not_a_server_error",
        "--max-examples", "400",
        "--generation-deterministic",
        "--report", "junit", "--report-junit-path", str(report),
        "--request-timeout", "30",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    cases = _cases_run(output)
    assert cases >= 1000, output[-2000:]
    assert Path(report).exists()


def _cases_run(output: str) -> int:
    """The number of generated test cases schemathesis reports ("N generated")."""
    import re

    found = re.findall(r"(\d+) generated", output)
    return sum(int(n) for n in found[-1:]) if found else 0
