"""The Kubernetes manifests say what the docs promise: the receiver gets its webhook
credentials, and the lanes' cluster-wide role is narrowed by an admission policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def test_the_receiver_reads_the_credentials_its_webhooks_are_checked_with() -> None:
    [deployment] = [doc for doc in documents("receiver.yaml") if doc["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry for entry in container["env"]}
    secret = env["SLIPWAY_CREDENTIALS"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "slipway-secrets", "key": "credentials"}


def test_the_lanes_cluster_role_is_narrowed_to_lane_namespaces() -> None:
    kinds = {doc["kind"]: doc for doc in documents("rbac-lanes.yaml")}
    policy = kinds["ValidatingAdmissionPolicy"]
    [condition] = policy["spec"]["matchConditions"]
    assert "system:serviceaccount:slipway:slipway-worker" in condition["expression"]
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    covered = {resource for rule in rules for resource in rule["resources"]}
    granted = {resource for rule in kinds["ClusterRole"]["rules"]
               for resource in rule["resources"]}
    assert granted <= covered  # every kind the role grants is checked by the policy
    checks = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert "'slipway.lane'" in checks
    binding = kinds["ValidatingAdmissionPolicyBinding"]
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}
