"""The deployment artifacts pass their validators, and the validators reject broken copies.

Offline and server-free: hadolint, docker-compose config, promtool (config, rules, unit tests),
kustomize + kubernetes-validate per overlay, the CRD-schema validation of the custom
resources, the alert-rule drift check, the dashboard's PromQL, and the load-test modules.
Every validator family has a negative test that feeds it a broken copy. These are static
checks of configuration (no engine, no cluster), so they live apart from the end-to-end
suite. `make test` installs the system tools; under bare pytest, a test whose tool is missing
(promtool, docker-compose, kustomize) is skipped with the tool named.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"
OVERLAYS = ("gke", "eks", "cpu-dev")
GPU_OVERLAYS = ("gke", "eks")
DOCKERFILES = ("docker/Dockerfile.gpu", "docker/Dockerfile.cpu")
RULES = REPO / "docker/prometheus/rules/prism-alerts.yml"


# -- helpers --------------------------------------------------------------------------------


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(REPO / ".venv" / "bin"))
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False, timeout=240
    )


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def assert_rejected(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0, f"accepted a broken input:\n{proc.stdout}\n{proc.stderr}"


def script(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, REPO / "scripts" / name, *args)


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def write_docs(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def kustomize_command() -> list[str]:
    """A kustomize that understands components: the standalone binary, or kubectl's."""
    standalone = shutil.which("kustomize")
    return [standalone, "build"] if standalone else [tool("kubectl"), "kustomize"]


def kustomize(directory: Path, out: Path) -> Path:
    proc = run(*kustomize_command(), directory)
    assert_ok(proc)
    out.write_text(proc.stdout)
    return out


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every overlay rendered once: name -> multi-document YAML file."""
    tmp = tmp_path_factory.mktemp("rendered")
    return {o: kustomize(REPO / "k8s/overlays" / o, tmp / f"{o}.yaml") for o in OVERLAYS}


@pytest.fixture(scope="session")
def rendered_keda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base with the KEDA component, through a throwaway kustomization."""
    tmp = tmp_path_factory.mktemp("keda")
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(REPO / "k8s/base", tmp)],
                "components": [os.path.relpath(REPO / "k8s/components/keda", tmp)],
            }
        )
    )
    return kustomize(tmp, tmp / "rendered.yaml")


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(objects)["spec"]["template"]["spec"]
    return spec


def server(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in pod_spec(objects)["containers"] if c["name"] == "prism")


def config(objects: list[dict[str, Any]]) -> dict[str, str]:
    cms = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("prism-config")
    ]
    assert len(cms) == 1
    data: dict[str, str] = cms[0]["data"]
    return data


# -- Dockerfiles ----------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: str) -> None:
    assert_ok(run(tool("hadolint"), dockerfile))


def test_hadolint_rejects_a_sloppy_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n")
    assert_rejected(run(tool("hadolint"), bad))


def _stages(dockerfile: str) -> dict[str, str]:
    text = (REPO / dockerfile).read_text()
    parts = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    stages = {}
    for part in parts:
        header = part.splitlines()[0]
        name = header.split(" AS ")[-1].strip() if " AS " in header else header
        stages[name] = "FROM " + part
    return stages


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_serve_without_torch_as_non_root(dockerfile: str) -> None:
    stages = _stages(dockerfile)
    assert {"builder", "store-baked", "store-mounted", "store", "serve"} <= stages.keys()
    serve, builder = stages["serve"], stages["builder"]
    assert list(stages)[-1] == "serve", "the serving stage must be the default target"
    for stage in (serve, builder):  # torch only ever in the model-building stage
        assert "torch" not in "\n".join(
            line for line in stage.splitlines() if "pip install" in line
        )
    assert "torch" in stages["store-baked"]
    assert "find_spec('torch') is not None" in serve  # the build fails if torch sneaks in
    assert re.search(r"^USER \$\{PRISM_UID\}", serve, re.MULTILINE)
    assert "ARG PRISM_UID=10001" in serve
    # Readiness semantics: the container is healthy only when it can answer.
    assert re.search(r"^HEALTHCHECK .*\n.*/readyz", serve, re.MULTILINE)
    assert '"--limit-concurrency"' in serve
    assert "PRISM_STORE_DIR=/models" in serve and "PRISM_AUTO_EXPORT=false" in serve
    assert '"--factory", "service.main:create_app"' in serve


def test_gpu_image_pairs_cuda12_cudnn9_with_a_cuda12_onnxruntime() -> None:
    text = (REPO / "docker/Dockerfile.gpu").read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)", text, re.MULTILINE)
    assert base and re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base[1])
    pin = re.search(r"^ARG ORT_GPU_VERSION=(\d+)\.(\d+)\.(\d+)", text, re.MULTILINE)
    # 1.27+ on PyPI are CUDA 13 builds: they would fall back to the CPU on this base.
    assert pin and (int(pin[1]), int(pin[2])) >= (1, 19) and (int(pin[1]), int(pin[2])) < (1, 27)
    assert '"onnxruntime-gpu==${ORT_GPU_VERSION}"' in text
    assert "PRISM_PROVIDER=cuda" in text
    assert "CUDAExecutionProvider" in text


def test_cpu_image_is_python_slim() -> None:
    stages = _stages("docker/Dockerfile.cpu")
    assert stages["serve"].startswith("FROM python:3.11-slim")
    assert "PRISM_PROVIDER=cpu" in stages["serve"]


def _packages() -> list[str]:
    """The project's top-level packages, as pyproject's setuptools `include` names them."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]]


def test_dockerignore_keeps_the_context_small_and_lets_every_package_in() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "**"  # everything is excluded first, then the needed paths re-included
    for needed in ("!pyproject.toml", *(f"!{package}/" for package in _packages())):
        assert needed in lines


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_copy_every_package(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    for package in _packages():
        assert f"COPY {package} ./{package}" in text, f"{dockerfile} does not copy {package}/"


# -- docker-compose -------------------------------------------------------------------------

COMPOSE_VARIANTS = {
    "gpu": ("-f", "docker/compose.yaml"),
    "cpu": ("-f", "docker/compose.yaml", "-f", "docker/compose.cpu.yaml"),
}


@pytest.mark.parametrize("variant", sorted(COMPOSE_VARIANTS))
def test_compose_config_is_clean(variant: str) -> None:
    proc = run(tool("docker-compose"), *COMPOSE_VARIANTS[variant], "config", "-q")
    assert_ok(proc)
    assert "WARNING" not in proc.stderr, proc.stderr


def _compose(variant: str) -> dict[str, Any]:
    proc = run(tool("docker-compose"), *COMPOSE_VARIANTS[variant], "config")
    assert_ok(proc)
    data: dict[str, Any] = yaml.safe_load(proc.stdout)
    return data


def test_compose_reserves_one_nvidia_gpu_and_runs_the_monitoring_stack() -> None:
    services = _compose("gpu")["services"]
    devices = services["prism"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["prism"]["environment"]["PRISM_PROVIDER"] == "cuda"
    assert any(v.endswith(":/models:ro") for v in services["prism"]["volumes"])
    prom_mounts = " ".join(services["prometheus"]["volumes"])
    assert "/etc/prometheus/rules" in prom_mounts and "prometheus.yml" in prom_mounts
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert (
        "/etc/grafana/provisioning" in grafana_mounts
        and "/etc/grafana/dashboards" in grafana_mounts
    )


def test_compose_cpu_override_parks_the_gpu_service() -> None:
    services = _compose("cpu")["services"]
    assert services["prism"]["profiles"] == ["gpu"]  # never started without --profile gpu
    cpu = services["prism-cpu"]
    assert "deploy" not in cpu
    assert cpu["environment"]["PRISM_PROVIDER"] == "cpu"
    assert cpu["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert "prism" in cpu["networks"]["default"]["aliases"]  # Prometheus scrapes prism:8000


def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "docker/compose.yaml").read_text())
    data["services"]["prism"]["deploy"]["resources"]["reservations"]["devices"][0][
        "capabilities"
    ] = "gpu"  # must be a list
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert_rejected(run(tool("docker-compose"), "-f", bad, "config", "-q"))


# -- Prometheus -----------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    proc = run(tool("promtool"), "check", "config", "docker/prometheus/prometheus.yml")
    assert_ok(proc)
    assert "rule files found" in proc.stdout


def test_prometheus_scrapes_the_service_as_job_prism() -> None:
    cfg = yaml.safe_load((REPO / "docker/prometheus/prometheus.yml").read_text())
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "prism")
    assert job["static_configs"][0]["targets"] == ["prism:8000"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert cfg["rule_files"] == ["rules/*.yml"]


def test_promtool_check_config_rejects_a_broken_config(tmp_path: Path) -> None:
    bad = tmp_path / "prometheus.yml"
    bad.write_text("global:\n  scrape_interval: banana\nscrape_configs: []\n")
    assert_rejected(run(tool("promtool"), "check", "config", bad))


def test_promtool_check_rules() -> None:
    assert_ok(run(tool("promtool"), "check", "rules", RULES))


def test_promtool_check_rules_rejects_bad_promql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n"
        "        expr: sum by (job (rate(prism_http_requests_total[5m]))\n"
    )
    assert_rejected(run(tool("promtool"), "check", "rules", bad))


def test_alert_unit_tests_pass() -> None:
    assert_ok(
        run(tool("promtool"), "test", "rules", "docker/prometheus/tests/prism-alerts.test.yml")
    )


def test_alert_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    rules = RULES.read_text().replace("> 0.9", "> 0.99")  # GPU memory: 95 % no longer fires
    assert rules != RULES.read_text()
    (tmp_path / "rules" / "prism-alerts.yml").write_text(rules)
    shutil.copy(REPO / "docker/prometheus/tests/prism-alerts.test.yml", tmp_path / "tests")
    assert_rejected(
        run(tool("promtool"), "test", "rules", tmp_path / "tests/prism-alerts.test.yml")
    )


def test_alerts_cover_the_operational_risks() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    needed = {
        "PrismLatencyP95High": (
            "histogram_quantile(0.95",
            "prism_http_request_duration_seconds_bucket",
        ),
        "PrismHighErrorRate": ('status=~"5.."',),
        "PrismGPUMemoryHigh": ("prism_gpu_memory_used_bytes / prism_gpu_memory_total_bytes", "0.9"),
        "PrismUnknownUserSurge": ("prism_unknown_user_requests_total",),
        "PrismNotReady": ("prism_ready == 0",),
    }
    for name, fragments in needed.items():
        assert name in alerts
        for fragment in fragments:
            assert fragment in alerts[name]["expr"], (name, fragment)
        assert alerts[name].get("for"), f"{name} needs a `for` duration"
        assert alerts[name]["labels"]["severity"] in {"warning", "critical"}


# -- Grafana --------------------------------------------------------------------------------


def test_dashboard_and_other_queries_parse() -> None:
    tool("promtool")
    assert_ok(script("check_promql.py"))


def test_dashboard_check_rejects_bad_promql(tmp_path: Path) -> None:
    tool("promtool")
    text = (REPO / "docker/grafana/dashboards/prism.json").read_text()
    bad = tmp_path / "prism.json"
    bad.write_text(
        text.replace("sum by (instance) (prism_queue_depth", "sum by (instance (prism_queue_depth")
    )
    assert bad.read_text() != text
    assert_rejected(script("check_promql.py", "--dashboard", bad))


def test_dashboard_check_rejects_a_missing_panel(tmp_path: Path) -> None:
    tool("promtool")
    dash = json.loads((REPO / "docker/grafana/dashboards/prism.json").read_text())
    dash["panels"] = [p for p in dash["panels"] if p.get("title") != "GPU memory"]
    bad = tmp_path / "prism.json"
    bad.write_text(json.dumps(dash))
    proc = script("check_promql.py", "--dashboard", bad)
    assert_rejected(proc)
    assert "prism_gpu_memory_total_bytes" in proc.stderr


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    ds = yaml.safe_load(
        (REPO / "docker/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (REPO / "docker/grafana/provisioning/dashboards/prism.yml").read_text()
    )
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    dash = json.loads((REPO / "docker/grafana/dashboards/prism.json").read_text())
    titles = {p["title"] for p in dash["panels"]}
    for title in (
        "Request rate",
        "Queue depth",
        "Batch size and running rows",
        "Unknown-user rate",
        "GPU memory",
    ):
        assert title in titles
    assert any("p50 / p95 / p99" in t for t in titles)
    assert any("5xx and 4xx" in t for t in titles)


# -- Kubernetes: schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_kubernetes_validate(overlay: str, rendered: dict[str, Path]) -> None:
    proc = run(
        tool("kubernetes-validate"),
        "--strict",
        "--quiet",
        "--no-warn",
        "-k",
        K8S_VERSION,
        rendered[overlay],
    )
    assert_ok(proc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_custom_resources_match_their_crds(overlay: str, rendered: dict[str, Path]) -> None:
    proc = script("validate_crs.py", "--k8s-version", K8S_VERSION, rendered[overlay])
    assert_ok(proc)
    kinds = {o["kind"] for o in docs(rendered[overlay])}
    if overlay in GPU_OVERLAYS:
        assert {"ServiceMonitor", "PrometheusRule"} <= kinds
        assert proc.stdout.count("crd ") == 2


def test_keda_component_validates(rendered_keda: Path) -> None:
    assert_ok(
        run(
            tool("kubernetes-validate"),
            "--strict",
            "--quiet",
            "--no-warn",
            "-k",
            K8S_VERSION,
            rendered_keda,
        )
    )
    proc = script("validate_crs.py", "--k8s-version", K8S_VERSION, rendered_keda)
    assert_ok(proc)
    assert "ScaledObject/prism (valid" in proc.stdout


def test_kubernetes_validate_rejects_an_unknown_field(
    tmp_path: Path, rendered: dict[str, Path]
) -> None:
    objects = docs(rendered["gke"])
    server(objects)["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    assert_rejected(
        run(
            tool("kubernetes-validate"),
            "--strict",
            "--quiet",
            "-k",
            K8S_VERSION,
            write_docs(tmp_path / "bad.yaml", objects),
        )
    )


def _break_servicemonitor_port(objects: list[dict[str, Any]]) -> None:
    one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["port"] = 8000  # must be a name


def _break_servicemonitor_field(objects: list[dict[str, Any]]) -> None:
    one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["intervall"] = "15s"


def _break_rule_expr(objects: list[dict[str, Any]]) -> None:
    del one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["expr"]


def _break_rule_duration(objects: list[dict[str, Any]]) -> None:
    one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"


def _break_metadata(objects: list[dict[str, Any]]) -> None:
    one(objects, "ServiceMonitor")["metadata"]["lables"] = {"a": "b"}


def _add_unknown_kind(objects: list[dict[str, Any]]) -> None:
    objects.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


@pytest.mark.parametrize(
    "breakage",
    [
        _break_servicemonitor_port,
        _break_servicemonitor_field,
        _break_rule_expr,
        _break_rule_duration,
        _break_metadata,
        _add_unknown_kind,
    ],
)
def test_crd_validation_rejects_broken_resources(
    breakage: Any, tmp_path: Path, rendered: dict[str, Path]
) -> None:
    objects = docs(rendered["gke"])
    breakage(objects)
    assert_rejected(script("validate_crs.py", write_docs(tmp_path / "bad.yaml", objects)))


def test_crd_validation_rejects_a_scaledobject_without_triggers(
    tmp_path: Path, rendered_keda: Path
) -> None:
    objects = docs(rendered_keda)
    del one(objects, "ScaledObject")["spec"]["triggers"]
    assert_rejected(script("validate_crs.py", write_docs(tmp_path / "bad.yaml", objects)))


def test_vendored_schemas_name_their_source() -> None:
    readme = (REPO / "k8s/schemas/README.md").read_text()
    files = sorted((REPO / "k8s/schemas").glob("*.json"))
    assert {f.name for f in files} == {
        "monitoring.coreos.com_servicemonitors_v1.json",
        "monitoring.coreos.com_prometheusrules_v1.json",
        "keda.sh_scaledobjects_v1alpha1.json",
    }
    for path in files:
        doc = json.loads(path.read_text())
        source = doc["source"]
        assert source["license"] == "Apache-2.0"
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
        assert source["repository"] in {
            "prometheus-operator/prometheus-operator",
            "kedacore/charts",
        }
        assert path.name in readme and source["commit"] in readme
        assert doc["openAPIV3Schema"]["properties"]["spec"]["type"] == "object"


# -- Kubernetes: what the manifests promise -------------------------------------------------


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_gpu_overlays_run_on_gpu_nodes_and_fetch_the_model(
    overlay: str, rendered: dict[str, Path]
) -> None:
    objects = docs(rendered[overlay])
    spec = pod_spec(objects)
    label = {"gke": "cloud.google.com/gke-accelerator", "eks": "eks.amazonaws.com/nodegroup"}[
        overlay
    ]
    assert list(spec["nodeSelector"]) == [label]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    resources = server(objects)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1

    (fetch,) = spec["initContainers"]
    script_text = " ".join(fetch["command"] + fetch["args"])
    cfg = config(objects)
    if overlay == "gke":
        assert "gcloud storage rsync" in script_text
        assert cfg["PRISM_MODEL_URL"].startswith("gs://")
        annotation = "iam.gke.io/gcp-service-account"
    else:
        assert "aws s3 sync" in script_text
        assert cfg["PRISM_MODEL_URL"].startswith("s3://")
        annotation = "eks.amazonaws.com/role-arn"
    assert annotation in one(objects, "ServiceAccount")["metadata"]["annotations"]
    assert {"name": "models", "mountPath": "/models"} in fetch["volumeMounts"]
    assert fetch["envFrom"] == server(objects)["envFrom"]  # one ConfigMap names the version
    assert cfg["PRISM_PROVIDER"] == "cuda"
    assert re.fullmatch(
        r"\d{4}-\d{2}-\d{2}\.\d+", cfg["PRISM_MODEL_REF"]
    )  # a version, not an alias
    assert any(v["name"] == "models" and "emptyDir" in v for v in spec["volumes"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened_and_drain_cleanly(overlay: str, rendered: dict[str, Path]) -> None:
    objects = docs(rendered[overlay])
    spec = pod_spec(objects)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], container["name"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    main = server(objects)
    assert main["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # time to load a model
    sleep = int(main["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = int(
        re.search(
            r'"--timeout-graceful-shutdown", "(\d+)"', (REPO / "docker/Dockerfile.gpu").read_text()
        )[1]
    )
    assert spec["terminationGracePeriodSeconds"] > sleep + graceful
    assert main["resources"]["requests"]["memory"] and main["resources"]["limits"]["memory"]
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "prism"
    }
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment(objects)["spec"]["selector"]


def test_cpu_dev_is_one_small_cpu_replica(rendered: dict[str, Path]) -> None:
    objects = docs(rendered["cpu-dev"])
    spec = pod_spec(objects)
    assert deployment(objects)["spec"]["replicas"] == 1
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert "initContainers" not in spec
    resources = server(objects)["resources"]
    assert (
        "nvidia.com/gpu" not in resources["requests"]
        and "nvidia.com/gpu" not in resources["limits"]
    )
    assert config(objects)["PRISM_PROVIDER"] == "cpu"
    assert not {"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"} & {
        o["kind"] for o in objects
    }
    assert all(m["mountPath"] != "/models" for m in server(objects)["volumeMounts"])  # baked store


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_the_hpa_owns_the_replica_count(overlay: str, rendered: dict[str, Path]) -> None:
    # A `replicas` field would reset an autoscaled fleet on every `kubectl apply -k`.
    objects = docs(rendered[overlay])
    assert "replicas" not in deployment(objects)["spec"]
    assert one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2


def test_the_run_command_and_the_images_bound_concurrency_alike() -> None:
    from benchmarks.overload import RUN_FLAGS

    flags = " ".join(RUN_FLAGS)
    assert flags in (REPO / "Makefile").read_text().replace("\\\n\t  ", "")
    for dockerfile in DOCKERFILES:
        cmd = re.search(r"^CMD \[(.*?)\]$", (REPO / dockerfile).read_text(), re.M | re.S)
        assert cmd is not None
        args = [a.strip().strip('"') for a in cmd[1].replace("\\\n", " ").split(",")]
        assert " ".join(args).endswith(flags), dockerfile


def test_hpa_scales_on_the_adapter_metric(rendered: dict[str, Path]) -> None:
    hpa = one(docs(rendered["gke"]), "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    rules = yaml.safe_load((REPO / "k8s/prometheus-adapter/rules.yaml").read_text())["rules"]
    assert metric["pods"]["metric"]["name"] in {r["name"]["as"] for r in rules}
    values = yaml.safe_load((REPO / "k8s/prometheus-adapter/values.yaml").read_text())
    assert values["rules"]["custom"] == rules and values["rules"]["default"] is False


def test_keda_component_replaces_the_hpa(rendered_keda: Path, rendered: dict[str, Path]) -> None:
    objects = docs(rendered_keda)
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in objects}
    scaled = one(objects, "ScaledObject")
    hpa = one(docs(rendered["gke"]), "HorizontalPodAutoscaler")
    assert scaled["spec"]["scaleTargetRef"]["name"] == hpa["spec"]["scaleTargetRef"]["name"]
    assert scaled["spec"]["minReplicaCount"] == hpa["spec"]["minReplicas"]
    assert scaled["spec"]["maxReplicaCount"] == hpa["spec"]["maxReplicas"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and "prism_queue_depth" in trigger["metadata"]["query"]
    assert (
        trigger["metadata"]["threshold"]
        == hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"]
    )


def test_prometheus_adapter_config_renders(tmp_path: Path) -> None:
    out = kustomize(REPO / "k8s/prometheus-adapter", tmp_path / "adapter.yaml")
    assert_ok(run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, out))
    (cm,) = docs(out)
    assert cm["metadata"] == {**cm["metadata"], "name": "adapter-config", "namespace": "monitoring"}
    assert (
        yaml.safe_load(cm["data"]["config.yaml"])["rules"][0]["name"]["as"] == "prism_queue_depth"
    )


# -- alert rules: compose and Kubernetes agree -------------------------------------------------


def test_prometheusrule_is_generated_from_the_compose_rules(rendered: dict[str, Path]) -> None:
    source = yaml.safe_load(RULES.read_text())["groups"]
    base = one(docs(REPO / "k8s/base/prometheusrule.yaml"), "PrometheusRule")
    assert base["spec"]["groups"] == source
    for overlay in GPU_OVERLAYS:
        assert one(docs(rendered[overlay]), "PrometheusRule")["spec"]["groups"] == source
    assert_ok(script("alert_rules.py", "check", *(rendered[o] for o in GPU_OVERLAYS)))


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_rules_extracted_from_the_overlay_pass_promtool(
    overlay: str, rendered: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "rules.yml"
    assert_ok(script("alert_rules.py", "extract", rendered[overlay], "-o", out))
    assert_ok(run(tool("promtool"), "check", "rules", out))
    assert yaml.safe_load(out.read_text())["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_alert_rule_drift_is_detected(tmp_path: Path) -> None:
    base = docs(REPO / "k8s/base/prometheusrule.yaml")
    drifted = copy.deepcopy(base)
    drifted[0]["spec"]["groups"][0]["rules"][0]["expr"] += " * 2"
    proc = script("alert_rules.py", "check", "--base", write_docs(tmp_path / "rule.yaml", drifted))
    assert_rejected(proc)
    assert "differs" in proc.stderr


# -- the whole script -------------------------------------------------------------------------


def test_validate_deploy_script_passes() -> None:
    for name in ("hadolint", "docker-compose", "promtool", "kubernetes-validate"):
        tool(name)
    kustomize_command()
    proc = run("bash", REPO / "scripts/validate-deploy.sh")
    assert_ok(proc)
    assert "all" in proc.stdout and "checks passed" in proc.stdout


# -- load tests (offline parts; the run against a server comes with the server fixture) --------


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run in a child: importing locust monkey-patches the process with gevent."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_load_shapes_are_bounded_and_selected_by_env() -> None:
    proc = _python(
        """
        from loadtests.shapes import SpikeLoadShape, StepLoadShape, shape_from_env
        step = StepLoadShape({"PRISM_STEP_USERS": "5", "PRISM_STEP_SECONDS": "10",
                              "PRISM_STEP_COUNT": "3", "PRISM_STEP_HOLD_SECONDS": "20"})
        assert [step.users_at(t) for t in (0, 9, 10, 25, 45)] == [5, 5, 10, 15, 15]
        assert step.users_at(step.duration) is None and step.duration == 50
        spike = SpikeLoadShape({"PRISM_SPIKE_BASE_USERS": "2", "PRISM_SPIKE_PEAK_USERS": "40",
                                "PRISM_SPIKE_WARMUP_SECONDS": "10", "PRISM_SPIKE_SECONDS": "5",
                                "PRISM_SPIKE_RECOVER_SECONDS": "10"})
        assert spike.users_at(0)[0] == 2 and spike.users_at(12)[0] == 40
        assert spike.users_at(16)[0] == 2 and spike.users_at(25) is None
        assert shape_from_env({}) is None
        assert shape_from_env({"PRISM_LOAD_SHAPE": "step"}) is StepLoadShape
        assert shape_from_env({"PRISM_LOAD_SHAPE": "Spike"}) is SpikeLoadShape
        try:
            shape_from_env({"PRISM_LOAD_SHAPE": "ramp"})
        except ValueError:
            pass
        else:
            raise AssertionError("an unknown shape must be refused")
        """
    )
    assert_ok(proc)


def test_payloads_look_like_a_rankers_traffic() -> None:
    proc = _python(
        """
        import random
        from loadtests.catalog import CATALOG
        from loadtests.payloads import INVALID_KINDS, PayloadFactory, TrafficMix, known_users_from_env
        assert len(CATALOG) >= 60 and len({f.item_id for f in CATALOG}) == len(CATALOG)
        assert known_users_from_env({})[:2] == ("s0001", "s0002")
        assert known_users_from_env({"PRISM_LOADTEST_KNOWN_USERS": " 42, 7 ,"}) == ("42", "7")
        f = PayloadFactory(TrafficMix(known_users=("u0001",)), rng=random.Random(7))
        lengths, unknown = [], 0
        for _ in range(500):
            body, known = f.explain()
            lengths.append(len(body["history"]))
            unknown += not known
            titles = [h if isinstance(h, str) else h["title"] for h in body["history"]]
            assert body["recommended_item"]["title"] not in titles
        assert min(lengths) >= 1 and max(lengths) <= 50 and max(lengths) > 30
        assert 50 < unknown < 150
        for _ in range(100):
            slate, _ = f.slate()
            assert 2 <= len(slate["requests"]) <= 8
            assert len({r["recommended_item"]["item_id"] for r in slate["requests"]}) == len(slate["requests"])
        bad = {k: f.invalid(k) for k in INVALID_KINDS}
        assert bad["empty-title"]["recommended_item"]["title"] == ""
        assert len(bad["history-too-long"]["history"]) == 51
        assert bad["num-beams-out-of-range"]["options"]["num_beams"] == 99
        """
    )
    assert_ok(proc)


@pytest.mark.parametrize("shape", ["", "step", "spike"])
def test_locustfile_loads_with_the_chosen_shape(shape: str) -> None:
    proc = _python(
        """
        import os
        from locust.util.load_locustfile import load_locustfile
        users, shapes = load_locustfile("loadtests/locustfile.py")
        assert list(users) == ["PrismUser"], users
        names = [type(s).__name__ for s in shapes]
        expected = {"": [], "step": ["StepLoadShape"], "spike": ["SpikeLoadShape"]}
        assert names == expected[os.environ["PRISM_LOAD_SHAPE"]], names
        """,
        PRISM_LOAD_SHAPE=shape,
    )
    assert_ok(proc)


def test_slo_gate_counts_shedding_apart_from_failures() -> None:
    proc = _python(
        """
        from locust.stats import RequestStats
        from locust.util.load_locustfile import load_locustfile
        import sys
        load_locustfile("loadtests/locustfile.py")
        lf = sys.modules["locustfile"]

        def stats(ok=100, shed=1, failed=0, ms=50):
            s = RequestStats()
            for _ in range(ok):
                s.log_request("POST", "/v1/explanations", ms, 10)
            for _ in range(shed):
                s.log_request(lf.OVERLOAD, "/v1/explanations", 2, 10)
            for _ in range(failed):
                s.log_request("POST", "/v1/explanations", ms, 10)
                s.log_error("POST", "/v1/explanations", "500")
            return s

        passed, line = lf.slo_verdict(stats(), 10)
        assert passed and "overload_503=1" in line and "failures=0" in line, line
        assert not lf.slo_verdict(stats(failed=1), 10)[0]                      # any failure
        assert not lf.slo_verdict(stats(shed=10), 10)[0]                       # > 2 % shed
        assert not lf.slo_verdict(stats(ms=5000), 10)[0]                       # p95 over 1 s
        assert not lf.slo_verdict(stats(ok=0, shed=0), 10)[0]                  # nothing served
        print(line)
        """
    )
    assert_ok(proc)
    assert proc.stdout.strip().startswith("prism-loadtest: requests=101 ")
