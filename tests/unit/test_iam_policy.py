"""deploy/iam-policy.json grants exactly the AWS actions the code calls."""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).parents[2]
# The service prefix IAM uses for each client attribute of the gateway.
_CLIENTS = {
    "_ecs": "ecs",
    "_cfn": "cloudformation",
    "_elbv2": "elasticloadbalancing",
    "_ec2": "ec2",
    "_events": "events",
    "sts": "sts",
    "_cloudwatch": "cloudwatch",
    "_logs": "logs",
}


def _pascal(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def actions_in_code() -> set[str]:
    """Every AWS operation the gateway calls, as IAM action names, found by reading its AST."""
    modules = sorted((ROOT / "worker" / "aws").glob("boto_*.py"))
    found: set[str] = set()
    for node in (n for m in modules for n in ast.walk(ast.parse(m.read_text()))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name not in _CLIENTS:
            continue
        operation = node.func.attr
        if operation == "get_paginator":
            first = node.args[0]
            assert isinstance(first, ast.Constant)
            operation = str(first.value)
        found.add(f"{_CLIENTS[name]}:{_pascal(operation)}")
    return found


def test_policy_grants_exactly_the_direct_calls() -> None:
    """The direct-call statement equals the operations the code makes: no more, no fewer."""
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    direct = next(s for s in policy["Statement"] if s["Sid"] == "ConveyorDirectCalls")
    # TagResource has a statement of its own: only the discard tag, only on task definitions.
    marking = next(s for s in policy["Statement"] if s["Sid"] == "MarkDiscardedRevisions")
    assert marking["Action"] == ["ecs:TagResource"]
    assert set(direct["Action"]) | set(marking["Action"]) == actions_in_code()


def test_code_scan_sees_the_calls_it_should() -> None:
    """The scan itself works: it finds calls we know are there (a scan that finds nothing fails)."""
    found = actions_in_code()
    assert {
        "ecs:UpdateService",
        "ecs:ListTaskDefinitions",
        "sts:AssumeRole",
        "cloudformation:UpdateStack",
    } <= found
