"""The SDK covers every operation in openapi.yaml (no daemon needed)."""

import inspect
import os
import re
from typing import List, Optional, Set, Tuple

import pytest

import dejima

METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")


def find_openapi() -> Optional[str]:
    env = os.environ.get("DEJIMA_OPENAPI")
    if env:
        return env
    d = os.path.dirname(os.path.abspath(__file__))
    for _ in range(6):
        p = os.path.join(d, "openapi.yaml")
        if os.path.exists(p):
            return p
        d = os.path.dirname(d)
    return None


def operations_by_lines(text: str) -> Set[Tuple[str, str]]:
    """(METHOD, path) of every operation: `  /v1/...:` keys under `paths:`, then their
    `    get:`-style keys. Enough YAML for openapi.yaml, without PyYAML."""
    ops: Set[Tuple[str, str]] = set()
    in_paths = False
    path: Optional[str] = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            in_paths = line == "paths:"
            path = None
            continue
        if not in_paths:
            continue
        m = re.match(r"^  (['\"]?)(/[^'\"]*)\1:\s*$", line)
        if indent == 2 and m:
            path = m.group(2)
            continue
        if indent == 2:
            path = None
            continue
        m = re.match(r"^    ([a-z]+):", line)
        if indent == 4 and path and m and m.group(1) in METHODS:
            ops.add((m.group(1).upper(), path))
    return ops


def spec_operations() -> Set[Tuple[str, str]]:
    path = find_openapi()
    if path is None:
        pytest.skip("openapi.yaml not found (set DEJIMA_OPENAPI)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ops = operations_by_lines(text)
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return ops
    doc = yaml.safe_load(text)
    by_yaml = {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in METHODS}
    assert ops == by_yaml, "the line reader disagrees with PyYAML"
    return ops


def test_every_operation_has_a_method() -> None:
    ops = spec_operations()
    assert len(ops) > 50
    missing: List[str] = [f"{m} {p}" for (m, p) in sorted(ops) if (m, p) not in dejima.ROUTES]
    assert not missing, f"openapi.yaml operations the SDK lacks (add to dejima.ROUTES): {missing}"


def test_routes_name_real_methods_and_real_operations() -> None:
    ops = spec_operations()
    stale = [k for k in dejima.ROUTES if k not in ops]
    assert not stale, f"dejima.ROUTES names operations openapi.yaml no longer has: {stale}"
    for (m, p), name in dejima.ROUTES.items():
        fn = getattr(dejima.Client, name, None)
        assert callable(fn), f"{m} {p} maps to {name}, which Client lacks"
        assert fn.__doc__, f"Client.{name} has no docstring"
        hints = inspect.signature(fn)
        assert hints.return_annotation is not inspect.Signature.empty, f"Client.{name} lacks a return type"


def test_line_reader() -> None:
    text = (
        "openapi: 3.0.3\n"
        "paths:\n"
        "  /v1/a:\n"
        "    parameters:\n"
        "      - $ref: x\n"
        "    get:\n"
        "      summary: s\n"
        "    post:\n"
        "      requestBody:\n"
        "        content:\n"
        "          application/json:\n"
        "            schema:\n"
        "              properties:\n"
        "                get: { type: string }\n"
        "\n"
        '  "/v1/b/{id}":\n'
        "    delete:\n"
        "      responses: {}\n"
        "components:\n"
        "  schemas:\n"
        "    get:\n"
    )
    assert operations_by_lines(text) == {("GET", "/v1/a"), ("POST", "/v1/a"), ("DELETE", "/v1/b/{id}")}


def test_every_method_is_exercised_by_the_suite() -> None:
    """Each public Client method is called somewhere in these tests."""
    here = os.path.dirname(os.path.abspath(__file__))
    source = ""
    for fn in os.listdir(here):
        if fn.endswith(".py") and fn != os.path.basename(__file__):
            with open(os.path.join(here, fn), encoding="utf-8") as f:
                source += f.read()
    public = [n for n, v in vars(dejima.Client).items() if callable(v) and not n.startswith("_")]
    unused = [n for n in public if not re.search(r"\." + n + r"\(", source)]
    assert not unused, f"Client methods no test calls: {unused}"
