"""Extract the part of Stripe's OpenAPI description that the emulator needs.

Run from the repository root (it is not imported at run time)::

    python stripe_migration/sandbox/stripe_emulator/data/extract.py \
        ../shared/data/stripe-openapi-spec3.json ../shared/data/stripe-fixtures3.json

It writes ``stripe_api_subset.json`` next to this file: the request parameters of the emulated
operations (query parameters folded into one object schema, descriptions dropped) and, for the
objects the emulator returns, their property names, required properties, expandable fields and
Stripe's example from the fixtures file. The output is deterministic (sorted keys), so running it
again on the same inputs gives the same file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

OPERATIONS = [
    ("get", "/v1/account"),
    ("get", "/v1/products"),
    ("post", "/v1/products"),
    ("get", "/v1/products/search"),
    ("get", "/v1/products/{id}"),
    ("post", "/v1/products/{id}"),
    ("get", "/v1/prices"),
    ("post", "/v1/prices"),
    ("get", "/v1/prices/search"),
    ("get", "/v1/prices/{price}"),
    ("post", "/v1/prices/{price}"),
    ("get", "/v1/events"),
    ("get", "/v1/events/{id}"),
]
OBJECTS = ["account", "event", "price", "product"]
_DROP_KEYS = {"description", "title", "x-stripeBypassValidation", "deprecated"}


def _strip(node: Any, names: bool = False) -> Any:
    """Drop documentation-only keys, recursively (``names``: ``node`` maps property names)."""
    if isinstance(node, dict):
        if names:
            return {k: _strip(v) for k, v in node.items()}
        return {
            k: _strip(v, names=(k == "properties")) for k, v in node.items() if k not in _DROP_KEYS
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op = spec["paths"][path][method]
    query: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}
    required: list[str] = []
    path_params: list[str] = []
    for param in op.get("parameters", []):
        if param["in"] == "path":
            path_params.append(param["name"])
        elif param["in"] == "query":
            query["properties"][param["name"]] = _strip(param["schema"])
            if param.get("required"):
                required.append(param["name"])
    if required:
        query["required"] = sorted(required)
    body = None
    if "requestBody" in op:
        content = op["requestBody"]["content"]["application/x-www-form-urlencoded"]
        body = _strip(content["schema"])
    return {
        "operation_id": op["operationId"],
        "method": method.upper(),
        "path": path,
        "path_params": path_params,
        "query": query if method == "get" else None,
        "body": body,
    }


def extract(spec_path: Path, fixtures_path: Path) -> dict[str, Any]:
    """Return the subset document built from the spec and fixtures files."""
    spec = json.loads(spec_path.read_text())
    fixtures = json.loads(fixtures_path.read_text())
    operations = {
        f"{method.upper()} {path}": _operation(spec, method, path) for method, path in OPERATIONS
    }
    objects = {}
    for name in OBJECTS:
        schema = spec["components"]["schemas"][name]
        objects[name] = {
            "properties": sorted(schema.get("properties", {})),
            "required": sorted(schema.get("required", [])),
            "expandable": sorted(schema.get("x-expandableFields", [])),
            "example": fixtures["resources"][name],
        }
    return {
        "source": {
            "spec": spec_path.name,
            "api_version": spec["info"]["version"],
            "fixtures": fixtures_path.name,
            "license": "MIT, Copyright (c) Stripe, Inc. See LICENSE-stripe-openapi.md.",
        },
        "operations": operations,
        "objects": objects,
    }


def main() -> None:
    """Command line entry: read the spec and fixtures, write ``stripe_api_subset.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("fixtures", type=Path)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("stripe_api_subset.json")
    )
    args = parser.parse_args()
    doc = extract(args.spec, args.fixtures)
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(doc['operations'])} operations)"
    )


if __name__ == "__main__":
    main()
