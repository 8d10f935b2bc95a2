#!/usr/bin/env python3
"""Extract from Microsoft's published Swagger files only the facts the contract test needs.

Reads ../shared/azdo-api/spec/<area>/<target>/*.json (Swagger 2.0, MIT, (c) 2018 Microsoft Docs) and
writes tests/contract/<target>.json: for every GET and OPTIONS operation its host, path template,
query parameters (with their enum values), the api-version it takes (GA or -preview.N), and a shallow
description of its 200 answer (the JSON type of each property of the item definition), so that
tests/integration/test_contract.py can check each request the exporter sends and each answer the
simulator gives without the whole 11 MB of specifications in the repository.

    python3 scripts/extract-contract.py            # rewrite tests/contract/*.json
    python3 scripts/extract-contract.py --check    # exit 1 if they differ from what the spec gives
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# shared/ lies beside the clone (or beside a folder of worktrees): the first parent that has it.
SPEC = next((parent / "shared" / "azdo-api" / "spec" for parent in ROOT.parents
             if (parent / "shared" / "azdo-api" / "spec").is_dir()), ROOT.parent / "shared" / "azdo-api" / "spec")
OUT = ROOT / "tests" / "contract"
AREAS = ("core", "build", "test", "testResults", "git", "policy", "audit", "release", "distributedTask",
         "pipelines", "hooks")
TARGETS = {"services-7.1": "7.1", "server-7.1": "azure-devops-server-7.1"}
NOTICE = ("Facts extracted by scripts/extract-contract.py from Microsoft's Azure DevOps REST API "
          "specifications (MicrosoftDocs/vsts-rest-api-specs, Swagger 2.0). License: MIT, "
          "Copyright (c) 2018 Microsoft Docs; the full license text is in ../shared/azdo-api/spec/LICENSE "
          "and tests/contract/LICENSE.")
JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object"}


def _api_version(operation: dict[str, Any], spec: dict[str, Any]) -> str | None:
    for parameter in operation.get("parameters", []):
        ref = parameter.get("$ref", "")
        if ref.startswith("#/parameters/api-Version"):
            resolved = spec["parameters"][ref.rsplit("/", 1)[1]]
            # "Version of the API to use.  This should be set to '7.1-preview.1' to use this version of the api."
            text = resolved.get("description", "")
            start = text.find("'")
            return text[start + 1:text.find("'", start + 1)] if start >= 0 else None
    return None


def _query(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    query: dict[str, dict[str, Any]] = {}
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "query" or "$ref" in parameter:
            continue
        entry: dict[str, Any] = {"type": parameter.get("type", "string")}
        if parameter.get("enum"):
            entry["enum"] = list(parameter["enum"])
            entry["enum_name"] = parameter.get("x-ms-enum", {}).get("name")
        query[parameter["name"]] = entry
    return query


def _schema_type(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    """The JSON type a property has on the wire; a $ref to an enum definition is a string."""
    parts = [schema] if "$ref" in schema else schema.get("allOf", [])
    refs = [part["$ref"] for part in parts if "$ref" in part]
    if refs:
        target = spec.get("definitions", {}).get(refs[0].rsplit("/", 1)[1], {})
        return _schema_type(target, spec) if target.get("type") not in (None, "object") else "object"
    if "additionalProperties" in schema:
        return "object"
    if "enum" in schema:  # enum properties often carry no "type"; their values are strings
        return schema.get("type", "string")
    kind = schema.get("type", "object")
    return kind if kind in JSON_TYPES else "object"


def _definition(spec: dict[str, Any], ref: str, seen: set[str] | None = None) -> dict[str, str]:
    """Property name -> JSON type for a definition, including what it inherits through allOf."""
    seen = seen if seen is not None else set()
    name = ref.rsplit("/", 1)[1]
    if name in seen:
        return {}
    seen.add(name)
    body = spec.get("definitions", {}).get(name, {})
    properties: dict[str, str] = {}
    for part in body.get("allOf", []):
        if "$ref" in part:
            properties.update(_definition(spec, part["$ref"], seen))
    for prop, schema in body.get("properties", {}).items():
        properties[prop] = _schema_type(schema, spec)
    return properties


def _response(operation: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    schema = operation.get("responses", {}).get("200", {}).get("schema")
    if not schema:
        return None
    if schema.get("type") == "array":
        items = schema.get("items", {})
        return {"list": True, "item": _definition(spec, items["$ref"]) if "$ref" in items else {}}
    if "$ref" in schema:
        return {"list": False, "item": _definition(spec, schema["$ref"])}
    return None


def extract(target_dir: str) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = []
    for area in AREAS:
        for path in sorted((SPEC / area / target_dir).glob("*.json")):
            spec = json.loads(path.read_text(encoding="utf-8-sig"))
            host = spec.get("host", "")
            for template, methods in {**spec.get("paths", {}), **spec.get("x-ms-paths", {})}.items():
                for method, operation in methods.items():
                    if method not in ("get", "options"):
                        continue
                    operations.append({
                        "area": area, "host": host, "method": method.upper(),
                        "path": template.split("?", 1)[0], "operation": operation.get("operationId"),
                        "api_version": _api_version(operation, spec), "query": _query(operation),
                        "response": _response(operation, spec)})
    operations.sort(key=lambda op: (op["path"].lower(), op["method"], op["operation"] or ""))
    return operations


def main() -> int:
    parser = argparse.ArgumentParser(description="Extract the contract facts from the Swagger files.")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not SPEC.is_dir():
        print(f"extract-contract: {SPEC} not found", file=sys.stderr)
        return 2
    different = False
    OUT.mkdir(parents=True, exist_ok=True)
    for name, target_dir in TARGETS.items():
        text = json.dumps({"notice": NOTICE, "target": name, "operations": extract(target_dir)},
                          indent=1, sort_keys=True) + "\n"
        out = OUT / f"{name}.json"
        if args.check:
            if not out.exists() or out.read_text() != text:
                print(f"extract-contract: {out} differs from the specification", file=sys.stderr)
                different = True
        else:
            out.write_text(text)
            print(f"wrote {out.relative_to(ROOT)} ({len(text) // 1024} KiB)")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
