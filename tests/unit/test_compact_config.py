"""A loaded configuration stays compact: shared strings, action sets and parts, no per-object dicts.

iam-token and iam-authz hold the whole configuration (and the previous one, through a
reload) within the functions' memory limit; these properties took a 10,000-Role
configuration's in-memory form from 65 MiB to 24 MiB (docs/scaling.md). Each test fails
on a regression of one of them: structural checks and an object count, no timing.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import types
from typing import Any

import pytest

from openfaas_iam.engine.policy import policy_index
from openfaas_iam.engine.roles import role_matcher
from openfaas_iam.model.loading import load_texts
from openfaas_iam.model.objects import NO_PRINCIPAL, IamConfig
from openfaas_iam.service.config_source import prepared

V1 = "iam.openfaas.com/v1"


def documents(issuers: int, policies: int, roles: int) -> list[dict[str, Any]]:
    """The shape of scripts/bench.py's large configuration: per-team Policies, Roles by user or by IdP + group."""
    docs: list[dict[str, Any]] = []
    for i in range(issuers):
        docs.append(
            {
                "apiVersion": V1,
                "kind": "JwtIssuer",
                "metadata": {"name": f"idp-{i}"},
                "spec": {"iss": f"https://idp-{i}.example.com", "aud": ["openfaas"]},
            }
        )
    for i in range(policies):
        statements = [
            {"sid": "rw", "effect": "Allow", "action": ["Function:*"], "resource": [f"team-{i}:*"]},
            {"sid": "guard", "effect": "Deny", "action": ["Function:Delete"], "resource": [f"team-{i}:prod-*"]},
        ]
        docs.append(
            {"apiVersion": V1, "kind": "Policy", "metadata": {"name": f"team-{i}"}, "spec": {"statement": statements}}
        )
    for i in range(roles):
        spec: dict[str, Any] = {"policy": [f"team-{i % policies}"]}
        if i % 2:
            spec["condition"] = {
                "StringEquals": {"jwt:iss": [f"https://idp-{i % issuers}.example.com"]},
                "ForAnyValue:StringLike": {"jwt:groups": [f"team-{i}-*"]},
            }
        else:
            spec["principal"] = {"jwt:sub": [f"user-{i}"]}
        docs.append({"apiVersion": V1, "kind": "Role", "metadata": {"name": f"role-{i}"}, "spec": spec})
    return docs


@pytest.fixture(scope="module")
def config() -> IamConfig:
    # Loaded from text, as a function loads it: a JSON parser makes a new string for every value.
    return prepared(load_texts([("compact", json.dumps(documents(4, 6, 8)))]))


def test_configuration_objects_have_no_instance_dict(config: IamConfig) -> None:
    index, matcher = policy_index(config), role_matcher(config)
    role = config.roles[1]
    assert role.condition is not None
    objects = [
        config.issuers[0],
        config.policies[0],
        config.policies[0].statements[0],
        role,
        role.condition,
        role.condition.clauses[0],
        *index.statements["team-0"],
        *index.statements["team-0"][0].resources[0],  # type: ignore[misc]
        *matcher.roles,
    ]
    for obj in objects:
        assert not hasattr(obj, "__dict__"), type(obj).__name__


def test_compiled_tests_are_objects_not_closures(config: IamConfig) -> None:
    """A closure costs a function and a cell per captured variable, about 1 KiB per clause."""
    index, matcher = policy_index(config), role_matcher(config)
    tests = [c.test for c in matcher.roles]
    tests += [cs.condition for name in index.statements for cs in index.statements[name] if cs.condition]
    assert tests
    for test in tests:
        assert not isinstance(test, types.FunctionType) or not test.__closure__, test
        assert not hasattr(test, "__dict__"), type(test).__name__


def test_equal_strings_are_one_object(config: IamConfig) -> None:
    by_name = {p.name: p for p in config.policies}
    statements = [st for p in config.policies for st in p.statements]
    allow = [st for st in statements if st.effect == "Allow"]
    assert len({id(st.effect) for st in allow}) == 1
    assert len({id(st.sid) for st in allow}) == 1
    assert len({id(st.actions) for st in allow}) == 1  # the tuple as well as its strings
    # A Role's reference to a Policy is the Policy's own name; an issuer URL in a condition is the JwtIssuer's.
    for role in config.roles:
        assert role.policies[0] is by_name[role.policies[0]].name
    issuers = {i.iss: i.iss for i in config.issuers}
    for role in config.roles:
        if role.condition is not None:
            iss = next(c for c in role.condition.clauses if c.key == "jwt:iss").values[0]
            assert iss is issuers[iss]
    assert len({id(i.aud) for i in config.issuers}) == 1
    assert len({id(r.namespace) for r in config.roles}) == 1


def test_action_sets_and_shapes_are_shared(config: IamConfig) -> None:
    index = policy_index(config)
    first, second = index.statements["team-0"], index.statements["team-1"]
    assert first[0].actions is second[0].actions  # one frozenset for every ["Function:*"]
    assert first[1].actions is second[1].actions
    assert index._shapes["team-0"] is index._shapes["team-1"]  # one action index for Policies written alike
    # The same decision as before sharing: the Deny statement only for Function:Delete.
    assert [cs.statement.sid for cs in index.for_action("team-1", "Function:Delete")] == ["rw", "guard"]
    assert [cs.statement.sid for cs in index.for_action("team-1", "Function:Get")] == ["rw"]


def test_resource_parts_are_shared_and_immutable(config: IamConfig) -> None:
    index = policy_index(config)
    guard0, guard1 = index.statements["team-0"][1], index.statements["team-1"][1]
    assert guard0.resources[0] is not None and guard1.resources[0] is not None
    assert guard0.resources[0][1] is guard1.resources[0][1]  # `prod-*`, parsed and compiled once
    rw0 = index.statements["team-0"][0]
    assert rw0.resources[0] is not None and rw0.resources[0][0] is guard0.resources[0][0]  # `team-0`
    with pytest.raises(dataclasses.FrozenInstanceError):
        guard0.resources[0][1].text = "*"  # type: ignore[misc]


def test_a_role_without_principal_shares_the_empty_one(config: IamConfig) -> None:
    assert all(r.principal is NO_PRINCIPAL for r in config.roles if r.condition is not None)
    with pytest.raises(TypeError):
        NO_PRINCIPAL["jwt:sub"] = ("x",)  # type: ignore[index]


def _reachable(root: object) -> int:
    """Python objects reachable from `root` that belong to it (not modules, classes or functions' globals)."""
    seen: set[int] = set()
    stack = [root]
    count = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType)) or obj is None:
            continue
        seen.add(id(obj))
        count += 1
        if isinstance(obj, types.FunctionType):
            stack.extend(c.cell_contents for c in obj.__closure__ or ())
            count += len(obj.__closure__ or ())
            continue
        stack.extend(gc.get_referents(obj))
    return count


def test_objects_per_configuration_object_stay_few() -> None:
    """Every object counts: 17 per configuration object now (35 before); a per-object dict, an unshared
    action set, or closures back in its compiled forms takes it past the bound."""
    sizes = (40, 400, 400)
    config = prepared(load_texts([("count", json.dumps(documents(*sizes)))]))
    per_object = _reachable(config) / sum(sizes)
    assert per_object < 20, per_object
    assert sys.getsizeof(config.policies[0].statements[0]) < 100  # slots, not a dict
