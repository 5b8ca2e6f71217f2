"""Locust load test for Prism: a ranker's traffic mix and an SLO gate.

Run from the repository root (see loadtests/README.md), e.g.:

  PRISM_LOAD_SHAPE=step locust -f loadtests/locustfile.py --headless \
      --host http://127.0.0.1:8000 --csv reports/loadtest/prism --html reports/loadtest/prism.html

Traffic: single explanations for known and unknown users (histories of 1 to 50 real films),
slates of 2 to 8 items on the batch endpoint, the model listing, and a few invalid requests
that must get 422. How results count:

- 2xx with the expected body, and 422 for the invalid requests: success.
- 503 with a Retry-After header (load shedding): not a failure; reported under the request
  type OVERLOAD and counted against PRISM_SLO_MAX_OVERLOAD_RATIO instead.
- Anything else (a 5xx, a 504, a 503 without Retry-After, a 422 for a valid request, a
  malformed body): a failure.

The SLO gate runs when the test quits and sets the exit code: 1 if the failure ratio is above
PRISM_SLO_MAX_FAILURE_RATIO (default 0), p95 or p99 of the served explanation requests are
above PRISM_SLO_P95_MS / PRISM_SLO_P99_MS, the 503 share is above
PRISM_SLO_MAX_OVERLOAD_RATIO, or nothing was served at all.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from locust import HttpUser, between, events, tag, task
from locust.runners import WorkerRunner
from locust.stats import StatsEntry

from loadtests import shapes
from loadtests.payloads import INVALID_KINDS, PayloadFactory, TrafficMix

log = logging.getLogger("prism.loadtest")

OVERLOAD = "OVERLOAD"  # request type of 503 + Retry-After answers in the statistics
EXPLAIN_NAMES = ("/v1/explanations", "/v1/explanations/batch")

# Exposed to locust only when PRISM_LOAD_SHAPE names one (locust picks up any LoadTestShape
# subclass bound in this module, so the shapes are not imported by name).
PrismLoadShape = shapes.shape_from_env()

_user_known_seen = {"expected_known": 0, "answered_known": 0}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _auth_headers() -> dict[str, str]:
    key = os.environ.get("PRISM_API_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


class PrismUser(HttpUser):
    """A ranker calling Prism for the items it is about to show."""

    host = os.environ.get("PRISM_LOADTEST_HOST", "http://127.0.0.1:8000")
    wait_time = between(
        _env_float("PRISM_LOADTEST_WAIT_MIN_S", 0.1), _env_float("PRISM_LOADTEST_WAIT_MAX_S", 1.0)
    )

    def on_start(self) -> None:
        self.payloads = PayloadFactory(TrafficMix.from_env(), rng=random.Random())
        self.client.headers.update({"Content-Type": "application/json", **_auth_headers()})

    # -- traffic ------------------------------------------------------------------------------

    @tag("explain")
    @task(70)
    def explain(self) -> None:
        body, known = self.payloads.explain()
        with self.client.post(
            "/v1/explanations", json=body, name="/v1/explanations", catch_response=True
        ) as response:
            data = _check(response, expect=200)
            if data is not None:
                if not isinstance(data.get("explanation"), str) or not data["explanation"]:
                    response.failure("200 without an explanation")
                    return
                _note_user_known(known, data.get("user_known"))

    @tag("explain")
    @task(20)
    def explain_slate(self) -> None:
        body, known = self.payloads.slate()
        size = len(body["requests"])
        with self.client.post(
            "/v1/explanations/batch",
            json=body,
            name="/v1/explanations/batch",
            catch_response=True,
        ) as response:
            data = _check(response, expect=200)
            if data is None:
                return
            results = data.get("results")
            if not isinstance(results, list) or len(results) != size:
                response.failure(f"batch of {size} answered with {results!r:.80}")
                return
            errors = [r.get("error") for r in results if not r.get("explanation")]
            if errors:
                response.failure(f"{len(errors)} of {size} slate items failed: {errors[0]!r:.120}")
                return
            for result in results:
                _note_user_known(known, result["explanation"].get("user_known"))

    @tag("models")
    @task(2)
    def models(self) -> None:
        with self.client.get("/v1/models", name="/v1/models", catch_response=True) as response:
            _check(response, expect=200)

    @tag("invalid")
    @task(3)
    def invalid(self) -> None:
        kind = random.choice(INVALID_KINDS)
        with self.client.post(
            "/v1/explanations",
            json=self.payloads.invalid(kind),
            name=f"/v1/explanations [invalid: {kind}]",
            catch_response=True,
        ) as response:
            data = _check(response, expect=422)
            if data is not None and not isinstance(data.get("error"), dict):
                response.failure("422 without the {'error': {...}} body")


def _check(response: Any, *, expect: int) -> dict[str, Any] | None:
    """Classify one response; the parsed body when it has the expected status, else None."""
    status = response.status_code
    if status == 503 and response.headers.get("Retry-After"):
        # Load shedding is the service working as designed: count it apart from failures.
        response.request_meta["request_type"] = OVERLOAD
        response.success()
        return None
    if status != expect:
        detail = (response.text or "")[:200].replace("\n", " ")
        if status == 503:
            response.failure("503 without Retry-After")
        else:
            response.failure(f"expected {expect}, got {status}: {detail}")
        return None
    try:
        data = response.json()
    except ValueError:
        response.failure(f"{status} with a body that is not JSON")
        return None
    if not isinstance(data, dict):
        response.failure(f"{status} with a JSON body that is not an object")
        return None
    response.success()
    return data


def _note_user_known(expected_known: bool, answered: object) -> None:
    if expected_known:
        _user_known_seen["expected_known"] += 1
        _user_known_seen["answered_known"] += answered is True


# -- SLO gate ---------------------------------------------------------------------------------


def _served_entry(stats: Any) -> StatsEntry:
    """The explanation requests that got an answer other than load shedding, merged."""
    merged = StatsEntry(stats, "served explanations", "", use_response_times_cache=False)
    for (name, method), entry in stats.entries.items():
        if method != OVERLOAD and name in EXPLAIN_NAMES:
            merged.extend(entry)
    return merged


def slo_verdict(stats: Any, run_seconds: float | None = None) -> tuple[bool, str]:
    """(passed, one-line summary) for the statistics of a finished run."""
    total = stats.total
    overload = sum(e.num_requests for (_, m), e in stats.entries.items() if m == OVERLOAD)
    served = _served_entry(stats)
    requests = total.num_requests
    failures = total.num_failures
    failure_ratio = failures / requests if requests else 0.0
    overload_ratio = overload / requests if requests else 0.0
    p50, p95, p99 = (served.get_response_time_percentile(p) for p in (0.5, 0.95, 0.99))
    rps = requests / run_seconds if run_seconds else total.total_rps

    limits = {
        "p95": _env_float("PRISM_SLO_P95_MS", 1000.0),
        "p99": _env_float("PRISM_SLO_P99_MS", 2500.0),
        "failure_ratio": _env_float("PRISM_SLO_MAX_FAILURE_RATIO", 0.0),
        "overload_ratio": _env_float("PRISM_SLO_MAX_OVERLOAD_RATIO", 0.02),
    }
    broken = []
    if served.num_requests == 0:
        broken.append("no explanation was served")
    if failure_ratio > limits["failure_ratio"]:
        broken.append(f"failure ratio {failure_ratio:.2%} > {limits['failure_ratio']:.2%}")
    if served.num_requests and p95 > limits["p95"]:
        broken.append(f"p95 {p95} ms > {limits['p95']:g} ms")
    if served.num_requests and p99 > limits["p99"]:
        broken.append(f"p99 {p99} ms > {limits['p99']:g} ms")
    if overload_ratio > limits["overload_ratio"]:
        broken.append(f"503 share {overload_ratio:.2%} > {limits['overload_ratio']:.2%}")

    known = _user_known_seen
    recognised = (
        f" known_users_recognised={known['answered_known']}/{known['expected_known']}"
        if known["expected_known"]
        else ""
    )
    summary = (
        f"prism-loadtest: requests={requests} rps={rps:.1f} "
        f"p50={p50}ms p95={p95}ms p99={p99}ms "
        f"failures={failures} ({failure_ratio:.2%}) overload_503={overload} ({overload_ratio:.2%})"
        f"{recognised} -> {'PASS' if not broken else 'FAIL: ' + '; '.join(broken)}"
    )
    return not broken, summary


@events.quitting.add_listener  # type: ignore[untyped-decorator]  # locust's EventHook
def _slo_gate(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master holds the aggregated statistics and decides
    stats = environment.stats
    start = stats.total.start_time
    last = stats.total.last_request_timestamp
    run_seconds = (last - start) if start and last and last > start else None
    passed, summary = slo_verdict(stats, run_seconds)
    print(summary, flush=True)
    if _user_known_seen["expected_known"] and not _user_known_seen["answered_known"]:
        log.warning(
            "no request for a 'known' user was answered user_known=true: set "
            "PRISM_LOADTEST_KNOWN_USERS to ids that exist in the served model"
        )
    environment.process_exit_code = 0 if passed else 1
