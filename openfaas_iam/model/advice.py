"""Warnings about documents that load but may not mean what their author thinks.

`openfaas-iam lint` prints these after the errors; they never stop a configuration from
loading. Each names the object and field and says what to write instead.
"""

from __future__ import annotations

from openfaas_iam.model.actions import expand_action
from openfaas_iam.model.conditions import Condition, parse_operator
from openfaas_iam.model.objects import IamConfig
from openfaas_iam.model.protected import FUNCTION_ACTIONS, SECRET_ACTIONS, Protection
from openfaas_iam.model.resources import VARIABLE

# Claims that IdPs send as lists: a single-valued operator on them never grants (fail closed).
LIST_CLAIMS = frozenset({"jwt:groups", "jwt:roles", "jwt:aud", "jwt:amr", "jwt:scope", "jwt:scp"})


def _condition_warnings(where: str, condition: Condition | None) -> list[str]:
    out = []
    for clause in condition.clauses if condition else ():
        op = parse_operator(clause.operator)
        if op.base != "null" and op.quantifier is None and clause.key in LIST_CLAIMS:
            out.append(
                f"{where}.condition: {clause.operator} on {clause.key} matches only when the token carries exactly "
                f"one value; with several it never grants (and a Deny applies). Write ForAnyValue:{clause.operator} "
                "(any of the token's values) or ForAllValues:... (every value)"
            )
    return out


def advise(config: IamConfig, protection: Protection | None = None) -> list[str]:
    """Every warning for a loaded configuration, in document order."""
    protection = protection or Protection()
    out: list[str] = []
    for policy in config.policies:
        for i, st in enumerate(policy.statements):
            where = f"Policy/{policy.name} statement[{i}] ({st.sid})"
            actions: set[str] = set()
            for a in st.actions:
                actions |= expand_action(a)
            if "Secret:Mount" in actions and any(a.lower() == "secret:mount" for a in st.actions):
                out.append(
                    f"{where}.action: Secret:Mount is openfaas-iam's own action (may a deploy mount this secret); "
                    "OpenFaaS for Enterprises does not know it, so keep this Policy out of a configuration you "
                    "apply there"
                )
            sensitive = actions & (FUNCTION_ACTIONS | SECRET_ACTIONS)
            if st.effect == "Allow" and sensitive:
                for r in st.resources:
                    if protection.names_bundle_object(r):
                        out.append(
                            f"{where}.resource: {r} is one of openfaas-iam's own objects; this statement lets its "
                            f"holders {', '.join(sorted(sensitive))} it, which is control of the IAM bundle itself"
                        )
            if st.effect == "Deny" and any(VARIABLE.search(r) for r in st.resources):
                out.append(
                    f"{where}.resource: this Deny uses a ${{jwt:...}} variable; for a token without one plain value "
                    "for it the Deny applies to every resource (fail closed)"
                )
            out += _condition_warnings(where, st.condition)
    for role in config.roles:
        out += _condition_warnings(f"Role/{role.name}", role.condition)
    return out
