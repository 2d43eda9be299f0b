"""The Kubernetes manifests say what the docs promise: the receiver gets its webhook
credentials, and the lanes' cluster-wide role is narrowed by an admission policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.settings import Settings

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
    kinds = {doc["kind"]: doc for doc in documents("rbac-lanes.yaml")
             + documents("lanes-policy.yaml")}
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


def test_the_manifests_grant_the_least_rights_and_configure_an_in_cluster_runtime(
        monkeypatch: pytest.MonkeyPatch) -> None:
    role = documents("rbac.yaml")[0]
    rules = {(group, resource): sorted(rule["verbs"])
             for rule in role["rules"] for group in rule["apiGroups"]
             for resource in rule["resources"]}
    assert rules == {
        ("apps", "deployments"): ["create", "delete", "get", "list", "patch"],
        ("apps", "deployments/scale"): ["get", "patch"],
        ("", "services"): ["create", "get", "patch"],
        ("", "pods"): ["get", "list", "patch"],
        ("", "namespaces"): ["get"],
    }
    config_map = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())
    for key, value in config_map["data"].items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    cluster = settings.clusters[settings.default_cluster]
    assert cluster.runtime == "kubernetes" and cluster.in_cluster
    worker = yaml.safe_load((DEPLOY / "worker.yaml").read_text())
    assert worker["spec"]["template"]["spec"]["serviceAccountName"] == "slipway-worker"


def test_the_lane_manifest_grants_what_lanes_use() -> None:
    role, binding = documents("rbac-lanes.yaml")
    rules = {(group, resource): sorted(rule["verbs"])
             for rule in role["rules"] for group in rule["apiGroups"]
             for resource in rule["resources"]}
    assert role["kind"] == "ClusterRole" and binding["kind"] == "ClusterRoleBinding"
    assert rules[("", "namespaces")] == ["create", "delete", "get", "list"]
    assert rules[("", "services")] == ["create", "delete", "get", "patch"]
    assert rules[("apps", "deployments")] == ["create", "delete", "get", "list", "patch"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "slipway-worker",
                                    "namespace": "slipway"}]
