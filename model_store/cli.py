"""`prism-store`: inspect, verify, publish and promote model versions from the shell.

Exit codes: 0 success, 1 a store error (one line on stderr, no traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from model_store.manifest import Manifest
from model_store.store import PRODUCTION, ModelStore, StoreError

ROOT_ENV = "PRISM_STORE_DIR"
DEFAULT_ROOT = Path("store")


def _split_ref(value: str) -> tuple[str, str]:
    name, _, ref = value.partition("@")
    return name, ref or PRODUCTION


def _parity(manifest: Manifest) -> str:
    if manifest.parity is None:
        return "parity not run"
    return "parity passed" if manifest.parity_passed else "parity FAILED"


def _cmd_list(store: ModelStore, _: argparse.Namespace) -> int:
    models = store.list_models()
    if not models:
        print(f"no models in {store.root}")
    status = 0
    for name in models:
        try:
            aliases = store.aliases(name)
            manifests = store.list_versions(name)
        except StoreError as exc:
            # One damaged model must not hide the others.
            print(f"prism-store: error: {exc}", file=sys.stderr)
            status = 1
            continue
        shown = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
        print(f"{name}  (aliases: {shown})")
        for manifest in manifests:
            tags = sorted(a for a, v in aliases.items() if v == manifest.version)
            marks = f"  [{', '.join(tags)}]" if tags else ""
            print(f"  {manifest.version}  {manifest.created}  {_parity(manifest)}{marks}")
    return status


def _cmd_show(store: ModelStore, args: argparse.Namespace) -> int:
    name, ref = _split_ref(args.target)
    # Not `resolve`: showing the manifest of a damaged version is how one finds out why.
    print(store.read_manifest(name, ref).to_json(), end="")
    return 0


def _cmd_verify(store: ModelStore, args: argparse.Namespace) -> int:
    name, ref = _split_ref(args.target)
    version = store.resolve(name, ref)
    print(f"ok: {name}@{version.version} ({len(version.manifest.files)} files match)")
    return 0


def _cmd_promote(store: ModelStore, args: argparse.Namespace) -> int:
    store.set_alias(args.name, args.alias, args.version)
    print(f"{args.name}: {args.alias} -> {args.version}")
    return 0


def _cmd_publish(store: ModelStore, args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if args.manifest_fields is not None:
        try:
            fields = json.loads(Path(args.manifest_fields).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"cannot read --manifest-fields {args.manifest_fields}: {exc}"
            ) from None
        if not isinstance(fields, dict):
            raise StoreError(f"--manifest-fields {args.manifest_fields} must hold a JSON object")
    version = store.publish(
        args.name,
        Path(args.source),
        version=args.version,
        manifest_fields=fields,
        aliases=args.alias,
    )
    print(f"published {version.name}@{version.version} at {version.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prism-store", description=__doc__)
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"store directory (default: ${ROOT_ENV}, else ./{DEFAULT_ROOT})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="models, versions, aliases and parity status")
    ref_help = f"NAME or NAME@REF, REF an alias or a version (default: {PRODUCTION})"
    show = commands.add_parser("show", help="print a version's manifest (files not checked)")
    show.add_argument("target", metavar="NAME[@REF]", help=ref_help)
    verify = commands.add_parser("verify", help="check every file against its sha256")
    verify.add_argument("target", metavar="NAME[@REF]", help=ref_help)

    promote = commands.add_parser("promote", help="point an alias at a version")
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--alias", default=PRODUCTION, help=f"default: {PRODUCTION}")

    publish = commands.add_parser("publish", help="publish a directory as a new version")
    publish.add_argument("source", metavar="SRC_DIR")
    publish.add_argument("--name", required=True)
    publish.add_argument("--version", default=None, help="default: YYYY-MM-DD.N (UTC)")
    publish.add_argument(
        "--alias", action="append", default=[], help="also set this alias (repeatable)"
    )
    publish.add_argument(
        "--manifest-fields",
        metavar="JSON_FILE",
        default=None,
        help="JSON object: base_model, input_format, d_model, num_users, eval, parity, ...",
    )
    return parser


_COMMANDS = {
    "list": _cmd_list,
    "show": _cmd_show,
    "verify": _cmd_verify,
    "promote": _cmd_promote,
    "publish": _cmd_publish,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits on --help and on bad usage; `main` returns the code instead.
        return exc.code if isinstance(exc.code, int) else 2
    root = args.root or Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
    try:
        return _COMMANDS[args.command](ModelStore(root), args)
    except (StoreError, OSError) as exc:
        print(f"prism-store: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
