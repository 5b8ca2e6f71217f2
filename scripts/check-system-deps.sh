#!/usr/bin/env bash
# The e2e suite runs real Prometheus/promtool, docker-compose and kubectl; say clearly what is missing.
missing=()
for tool in promtool prometheus docker-compose kubectl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing system tools: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install prometheus docker-compose kubernetes-client   (or run .ci/run)" >&2
  exit 1
fi
