"""The JSON Schemas of schemas/ as validators, for tests that check records against them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def load_schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return doc


@cache
def registry() -> Registry[Any]:
    """Every schema file, registered under its own $id (refs are relative to it)."""
    resources = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        doc = json.loads(path.read_text())
        resources.append(
            (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
        )
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), registry=registry())


def schema_errors(name: str, doc: Any) -> list[str]:
    return [e.message for e in validator(name).iter_errors(doc)]


def standalone(name: str) -> dict[str, Any]:
    """The schema with sample.schema.json's $defs inlined: one document without remote refs,
    as hypothesis-jsonschema needs it."""
    sample = load_schema("sample")
    defs = sample["$defs"]
    body = {k: v for k, v in sample.items() if k not in ("$schema", "$id", "$defs")}

    def local(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("$ref") == "sample.schema.json":
                return local(body)
            out = {k: local(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("sample.schema.json#"):
                out["$ref"] = ref.removeprefix("sample.schema.json")
            return out
        if isinstance(node, list):
            return [local(v) for v in node]
        return node

    doc: dict[str, Any] = local(load_schema(name))
    doc.pop("$id", None)
    doc["$defs"] = defs
    return doc


_DONE = object()


class _ManyWithMore:
    """hypothesis-jsonschema 0.23 (the latest) steps Hypothesis's private collection helper with
    `more()`, which Hypothesis 6.170 replaced by a context-managed iterator; this adapts the new
    helper to the old calls. Remove once hypothesis-jsonschema follows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from hypothesis.internal.conjecture import utils

        self._many = utils.many(*args, **kwargs)
        self._many.__enter__()
        self._steps = iter(self._many)

    def more(self) -> bool:
        if next(self._steps, _DONE) is _DONE:
            self._many.__exit__(None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


def from_schema(schema: dict[str, Any]) -> Any:
    """hypothesis_jsonschema.from_schema, working with the installed Hypothesis."""
    import types

    from hypothesis.internal.conjecture import utils
    from hypothesis_jsonschema import _from_schema

    if not hasattr(utils.many, "more") and _from_schema.cu is utils:
        _from_schema.cu = types.SimpleNamespace(**{**vars(utils), "many": _ManyWithMore})
    return _from_schema.from_schema(schema)
