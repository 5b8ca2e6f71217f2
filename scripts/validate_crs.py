"""Validate rendered Kubernetes manifests that kubernetes-validate cannot check.

kubernetes-validate ships schemas for the built-in kinds only and merely *warns* about any
other kind. This script closes that gap, offline:

- a custom resource (ServiceMonitor, PrometheusRule, ScaledObject, ...) is validated with
  jsonschema against the openAPIV3Schema of its CRD, vendored under k8s/schemas/, strictly:
  unknown fields are errors, as with `kubectl apply --validate=strict`, and `metadata` is
  checked against the ObjectMeta schema of the pinned Kubernetes version;
- a built-in kind must have a schema in kubernetes-validate for that version (it is validated
  by the kubernetes-validate CLI step of scripts/validate-deploy.sh);
- anything else is an error: a kind nobody can validate must not slip through.

Usage: python scripts/validate_crs.py [--k8s-version 1.30.0] [--schemas DIR] FILE...
Exit status 0 when every document passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMAS = REPO / "k8s" / "schemas"
DEFAULT_K8S_VERSION = "1.30.0"

# Go's RE2 accepts an inline flag group anywhere; Python 3.11+ only at the very start.
_LATE_FLAGS = re.compile(r"^\^\(\?([a-z]+)\)")


@dataclass(frozen=True)
class CrdSchema:
    group: str
    version: str
    kind: str
    schema: dict[str, Any]
    source: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def _close_objects(node: Any) -> Any:
    """Make objects with declared properties reject unknown keys (the API server's strict
    field validation); fix regex flags that Python rejects."""
    if isinstance(node, dict):
        out = {k: _close_objects(v) for k, v in node.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        pattern = out.get("pattern")
        if isinstance(pattern, str) and (m := _LATE_FLAGS.match(pattern)):
            out["pattern"] = f"(?{m.group(1)})^" + pattern[m.end() :]
        return out
    if isinstance(node, list):
        return [_close_objects(v) for v in node]
    return node


def load_crd_schemas(directory: Path) -> dict[tuple[str, str], CrdSchema]:
    """Vendored schemas by (apiVersion, kind)."""
    schemas: dict[tuple[str, str], CrdSchema] = {}
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        crd = CrdSchema(
            group=doc["group"],
            version=doc["version"],
            kind=doc["kind"],
            schema=_close_objects(doc["openAPIV3Schema"]),
            source=path.name,
        )
        jsonschema.Draft202012Validator.check_schema(crd.schema)
        schemas[(crd.api_version, crd.kind)] = crd
    return schemas


def _object_meta_schema(k8s_version: str) -> dict[str, Any]:
    """ObjectMeta from kubernetes-validate's strict definitions of that Kubernetes version."""
    import importlib.resources

    import kubernetes_validate.utils as kv

    wanted = kv.major_minor(k8s_version)
    version = [v for v in kv.all_versions() if kv.major_minor(v) <= wanted][-1]
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads(
        (root / f"v{version}-local-strict" / "_definitions.json").read_text(encoding="utf-8")
    )
    # Draft 2020-12 with "#/$defs/..." references, as kubernetes-validate itself uses them.
    return {
        "$defs": definitions["$defs"],
        "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    }


def _has_builtin_schema(doc: dict[str, Any], k8s_version: str) -> bool:
    import kubernetes_validate.utils as kv

    try:
        kv.validate(doc, k8s_version, strict=True)
    except kv.SchemaNotFoundError:
        return False
    except Exception:  # invalid, but a schema exists: the CLI step reports the details
        return True
    return True


def iter_documents(paths: list[Path]) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for index, doc in enumerate(yaml.safe_load_all(text)):
            if doc:
                yield path, index, doc


def _describe(doc: dict[str, Any]) -> str:
    name = (doc.get("metadata") or {}).get("name", "?")
    return f"{doc.get('kind', '?')}/{name}"


def validate_documents(
    paths: list[Path], *, schemas_dir: Path, k8s_version: str
) -> tuple[list[str], list[str]]:
    """(errors, report lines) for every document of every file."""
    crds = load_crd_schemas(schemas_dir)
    meta_schema = _object_meta_schema(k8s_version)
    meta_validator = jsonschema.Draft202012Validator(meta_schema)
    errors: list[str] = []
    report: list[str] = []
    for path, index, doc in iter_documents(paths):
        where = f"{path}[{index}] {_describe(doc)}"
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            errors.append(f"{where}: not a Kubernetes object (apiVersion and kind required)")
            continue
        crd = crds.get((doc["apiVersion"], doc["kind"]))
        if crd is None:
            if _has_builtin_schema(doc, k8s_version):
                report.append(f"core  {where} (checked by kubernetes-validate)")
            else:
                errors.append(
                    f"{where}: no schema for {doc['apiVersion']} {doc['kind']}: neither "
                    f"built into kubernetes-validate {k8s_version} nor vendored in {schemas_dir}"
                )
            continue
        found = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in jsonschema.Draft202012Validator(crd.schema).iter_errors(doc)
        ]
        found += [
            f"{'.'.join(['metadata', *(str(p) for p in e.absolute_path)])}: {e.message}"
            for e in meta_validator.iter_errors(doc.get("metadata") or {})
        ]
        if not (doc.get("metadata") or {}).get("name"):
            found.append("metadata.name: required")
        if found:
            errors.extend(f"{where}: {msg}" for msg in found)
        else:
            report.append(f"crd   {where} (valid against {crd.source})")
    return errors, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS)
    parser.add_argument("--k8s-version", default=DEFAULT_K8S_VERSION)
    parser.add_argument("--quiet", action="store_true", help="print errors only")
    args = parser.parse_args(argv)
    try:
        errors, report = validate_documents(
            args.files, schemas_dir=args.schemas, k8s_version=args.k8s_version
        )
    except (OSError, yaml.YAMLError, json.JSONDecodeError, KeyError) as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        for line in report:
            print(line)
    for line in errors:
        print(f"ERROR {line}", file=sys.stderr)
    if not report and not errors:
        print("ERROR no Kubernetes objects found", file=sys.stderr)
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
