"""The SDK covers every /v1 operation of api/openapi.yaml on both faces.

den._operations.OPERATIONS maps each operationId to the method that covers
it. These tests fail when the spec has an operation the table lacks, when
the table names an operation the spec lacks, or when a method the table
names is missing from den.Client or den.AsyncClient (or is sync on the async
face). Removing an SDK method, or adding an operation to the spec without
one, fails here.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

import den
from den._operations import GUEST_METHODS, OPERATIONS

SPEC = Path(__file__).resolve().parents[3] / "api" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def spec_operations(spec: dict[str, Any]) -> dict[str, str]:
    """operationId -> "METHOD path" of every /v1 operation."""
    ops = {}
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            if method in METHODS:
                ops[op["operationId"]] = f"{method.upper()} {path}"
    return ops


def resolve(obj: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        obj = getattr(obj, name)
    return obj


def is_async_method(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def problems(spec_ops: dict[str, str], table: dict[str, str], sync: Any, asyn: Any) -> list[str]:
    """What keeps the table, the spec and the two faces from agreeing."""
    out = []
    for op_id, where in sorted(spec_ops.items()):
        if op_id not in table:
            out.append(f"{op_id} ({where}) has no SDK method in den._operations.OPERATIONS")
    for op_id in sorted(set(table) - set(spec_ops)):
        out.append(f"OPERATIONS names {op_id}, which api/openapi.yaml does not have")
    for op_id, dotted in sorted(table.items()):
        for face, obj, want_async in (("den.Client", sync, False), ("den.AsyncClient", asyn, True)):
            try:
                fn = resolve(obj, dotted)
            except AttributeError:
                out.append(f"{op_id}: {face} has no {dotted}")
                continue
            if not callable(fn):
                out.append(f"{op_id}: {face}.{dotted} is not callable")
            elif dotted != "sandbox" and is_async_method(fn) != want_async:
                out.append(f"{op_id}: {face}.{dotted} is {'async' if is_async_method(fn) else 'sync'}")
    return out


@pytest.fixture(scope="module")
def spec_ops() -> dict[str, str]:
    return spec_operations(yaml.safe_load(SPEC.read_text()))


@pytest.fixture(scope="module")
def faces() -> tuple[den.Client, den.AsyncClient]:
    # Clients are built without contacting the server.
    return den.Client("http://127.0.0.1:9", "k"), den.AsyncClient("http://127.0.0.1:9", "k")


def test_spec_has_the_operations_counted(spec_ops: dict[str, str]) -> None:
    assert len(spec_ops) == 55, sorted(spec_ops)


def test_every_operation_has_a_method_on_both_faces(spec_ops: dict[str, str], faces: tuple[Any, Any]) -> None:
    assert problems(spec_ops, OPERATIONS, *faces) == []


def test_guest_protocol_methods_exist_on_both_handles(faces: tuple[Any, Any]) -> None:
    sync, asyn = faces
    missing = []
    for rpc, dotted in GUEST_METHODS.items():
        for face, handle, want_async in (("Sandbox", sync.sandbox("x"), False), ("AsyncSandbox", asyn.sandbox("x"), True)):
            try:
                fn = resolve(handle, dotted)
            except AttributeError:
                missing.append(f"{rpc}: {face} has no {dotted}")
                continue
            if is_async_method(fn) != want_async:
                missing.append(f"{rpc}: {face}.{dotted} is {'async' if is_async_method(fn) else 'sync'}")
    assert missing == []


def test_checker_fails_on_a_missing_operation(spec_ops: dict[str, str], faces: tuple[Any, Any]) -> None:
    table = dict(OPERATIONS)
    del table["forkSandbox"]
    assert problems(spec_ops, table, *faces) == ["forkSandbox (POST /v1/sandboxes/{id}/fork) has no SDK method in den._operations.OPERATIONS"]


def test_checker_fails_on_a_missing_method(spec_ops: dict[str, str], faces: tuple[Any, Any]) -> None:
    table = dict(OPERATIONS, forkSandbox="sandboxes.clone")
    assert problems(spec_ops, table, *faces) == [
        "forkSandbox: den.Client has no sandboxes.clone",
        "forkSandbox: den.AsyncClient has no sandboxes.clone",
    ]


def test_checker_fails_on_a_method_removed_from_one_face(spec_ops: dict[str, str], faces: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(den.AsyncPools, "resize")
    assert problems(spec_ops, OPERATIONS, *faces) == ["resizePool: den.AsyncClient has no pools.resize"]


def test_checker_fails_on_an_operation_the_spec_lacks(spec_ops: dict[str, str], faces: tuple[Any, Any]) -> None:
    table = dict(OPERATIONS, cloneSandbox="sandboxes.fork")
    assert problems(spec_ops, table, *faces) == ["OPERATIONS names cloneSandbox, which api/openapi.yaml does not have"]
