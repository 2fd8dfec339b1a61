"""The decision engine: compiled, indexed statements; Role matching; explanations and review tools.

`policy` decides (Deny first, fail-closed rules), `roles` matches tokens to Roles through an
index, `simulate` explains a decision, `policy_tools` answers who-can, diff and policy tests
from the configuration alone. Pure: imports `model` and the foundation modules only.
"""
