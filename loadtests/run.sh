#!/usr/bin/env bash
# make loadtest: a headless Locust run against a running service, reports in reports/loadtest/.
# Usage: loadtests/run.sh [URL]   (shape: PRISM_LOAD_SHAPE=step|spike, default step)
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-http://127.0.0.1:8000}
if ! curl -fsS "$url/readyz" >/dev/null 2>&1; then
  echo "no ready Prism service at $url: start one with 'make run' in another shell first" >&2
  exit 1
fi
mkdir -p reports/loadtest
shape=${PRISM_LOAD_SHAPE:-step}
PRISM_LOAD_SHAPE=$shape .venv/bin/locust -f loadtests/locustfile.py --headless --host "$url" \
  --csv "reports/loadtest/$shape" --html "reports/loadtest/$shape.html" --only-summary
