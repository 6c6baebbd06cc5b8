"""The Helm chart (helm/ce-gateway), rendered in-process by Helm's own Go library.

helm-python-sdk binds Helm v4's Go SDK (`Chart.load(...).render(values=...)`, `lint`), so these
are the manifests `helm template` would print. Every rendered manifest is validated against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), except the
Prometheus Operator's ServiceMonitor and PrometheusRule, which are CRDs those schemas do not
have; their rules are checked with promtool instead. The rendered ConfigMap is fed to
`ce-gateway validate-config`, so the chart and the gateway cannot disagree about the file, and
the S11 hardening points and the restricted Pod Security Standard are asserted on the YAML.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.durations import parse_size
from tests.conftest import LOOPBACK_EGRESS, make_settings, run_gateway, settle, subscription
from tests.support.subscriber import Answer, run_subscriber

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ce-gateway"
CLI = Path(sys.executable).with_name("ce-gateway")
KUBE_VERSION = "1.35.0"  # shipped by kubernetes-validate 1.37; Chart.yaml asks >=1.25
RELEASE, NAMESPACE = "gw", "events"
FULLNAME = f"{RELEASE}-ce-gateway"
# CRDs: not in the Kubernetes schemas, so kubernetes-validate cannot check them (by name only).
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
METADATA_IP = ipaddress.ip_address("169.254.169.254")
SECRETS = {
    "publisher": "pub-token-5f1c2e0a9b",
    "admin": "admin-token-77d3b1c4e8",
    "orders-signing": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}

SUBSCRIBED_CONFIG: dict[str, Any] = {
    "server": {"port": 8080, "maxBodySize": "2MiB", "maxMapSize": "4GiB"},
    "egress": {"allowedNetworks": ["10.0.0.0/8"], "deniedNetworks": []},
    "auth": {"publisherTokenFile": "/secrets/publisher", "adminTokenFile": "/secrets/admin"},
    "topics": [{"name": "orders", "retention": "24h"}, {"name": "orders-dead", "retention": "7d"}],
    "subscriptions": [
        {
            "name": "orders-to-billing",
            "topic": "orders",
            "filters": [
                {"exact": {"type": "com.example.order.created"}},
                {"any": [{"prefix": {"source": "/shop/"}}, {"suffix": {"subject": ".pdf"}}]},
            ],
            "destination": {
                "http": {"url": "https://billing.internal/events", "contentMode": "binary"}
            },
            "ackDeadline": "10s",
            "retryPolicy": {"minimumBackoff": "10s", "maximumBackoff": "600s"},
            "maxDeliveryAttempts": 5,
            "permanentStatusCodes": [400, 401, 403, 405, 410, 413, 415, 422],
            "deadLetterTopic": "orders-dead",
            "signing": {"secretFile": "/secrets/orders-signing"},
        }
    ],
}
NETWORK_POLICY: dict[str, Any] = {
    "enabled": True,
    "ingress": {"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}]},
    "egress": {
        "subscribers": [
            {"cidr": "10.20.0.0/16", "ports": [8080]},
            {"cidr": "0.0.0.0/0"},
            {"cidr": "169.254.0.0/16", "ports": [8443]},
            {"cidr": "160.0.0.0/4"},
            {"cidr": "170.0.0.0/8"},
            {"cidr": "fd00::/8"},
        ]
    },
}
MONITORING: dict[str, Any] = {
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "grafana": {"dashboard": {"enabled": True}},
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "network-policy": {"networkPolicy": NETWORK_POLICY},
    "monitoring": MONITORING,
    "existing-secret": {
        "existingSecret": "gw-tokens",
        "config": {"auth": SUBSCRIBED_CONFIG["auth"]},
    },
    "secrets-and-subscriptions": {"secrets": SECRETS, "config": SUBSCRIBED_CONFIG},
    "everything": {
        "secrets": SECRETS,
        "config": SUBSCRIBED_CONFIG,
        "networkPolicy": NETWORK_POLICY,
        **MONITORING,
    },
}


# -- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    files: dict[str, str]

    @property
    def manifests(self) -> list[dict[str, Any]]:
        return [
            doc
            for name, text in sorted(self.files.items())
            if not name.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    @property
    def notes(self) -> str:
        return self.files["ce-gateway/templates/NOTES.txt"]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.manifests if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("StatefulSet")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["containers"]
        return dict(container)

    def pod_secret_name(self) -> str | None:
        for volume in self.pod["volumes"]:
            if volume["name"] == "secrets":
                name: str = volume["secret"]["secretName"]
                return name
        return None

    @property
    def config_text(self) -> str:
        text: str = self.one("ConfigMap", FULLNAME)["data"]["config.yaml"]
        return text


def render(values: dict[str, Any] | None = None) -> Rendered:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE)
    return Rendered(files)


@functools.cache
def scenario(name: str) -> Rendered:
    return render(SCENARIOS[name])


def validate_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run(
        [CLI, "validate-config", str(path)], capture_output=True, text=True, timeout=60
    )


def validate_as_mounted(rendered: Rendered, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`validate-config` on the rendered ConfigMap's file as the pod sees it: /secrets holds
    the files of the Secret the chart renders (an existingSecret is the user's: stand-in files
    for the keys the config names). The gateway reads signing secrets when it checks a file."""
    mount = tmp_path / "secrets"
    mount.mkdir()
    for secret in rendered.kind("Secret"):
        for key, value in secret["data"].items():
            (mount / key).write_bytes(base64.b64decode(value))
    if rendered.pod_secret_name() not in (None, f"{FULLNAME}-secrets"):
        for key in re.findall(r"/secrets/([-._a-zA-Z0-9]+)", rendered.config_text):
            (mount / key).write_text("stand-in-token-of-32-characters")
    return validate_config(tmp_path, rendered.config_text.replace("/secrets/", f"{mount}/"))


every_scenario = pytest.mark.parametrize("name", list(SCENARIOS))


# -- Helm's own checks -----------------------------------------------------------------------


@every_scenario
def test_helm_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, SCENARIOS[name], strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert report["total_charts_linted"] == 1
    # 1 = info ("icon is recommended"); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": 2}, "/replicaCount"),  # R15: never two pods on one LMDB volume
        ({"config": {"server": {"dataDir": "/elsewhere"}}}, "/config/server/dataDir"),
        ({"config": {"server": {"host": "127.0.0.1"}}}, "/config/server/host"),
        ({"config": {"topicz": []}}, "/config"),
        ({"securityContext": {"runAsUser": 0, "runAsGroup": 1, "fsGroup": 1}}, "runAsUser"),
        ({"secrets": {"../escape": "x"}}, "invalid propertyName '../escape'"),
        ({"networkPolicy": {"egress": {"subscribers": [{"ports": [443]}]}}}, "subscribers/0"),
        ({"persistence": {"size": "10Gi", "accessMode": "ReadWriteMany"}}, "/persistence"),
        ({"replicas": 3}, "replicas"),
        ({"metrics": {"prometheusRule": {"deadLetteringFor": "soon"}}}, "deadLetteringFor"),
    ],
)
def test_values_schema_refuses(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        render(values)
    assert where in str(refused.value)


def test_replica_count_zero_stops_the_gateway() -> None:
    assert render({"replicaCount": 0}).one("StatefulSet")["spec"]["replicas"] == 0


# -- Kubernetes schemas ----------------------------------------------------------------------


@every_scenario
def test_every_manifest_is_valid_kubernetes(name: str) -> None:
    skipped = []
    for doc in scenario(name).manifests:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == CRD_KINDS[doc["kind"]]
            skipped.append(doc["kind"])
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    if name in ("monitoring", "everything"):
        assert sorted(skipped) == ["PrometheusRule", "ServiceMonitor"]


def test_the_schema_check_is_not_a_no_op() -> None:
    statefulset = scenario("defaults").one("StatefulSet")
    broken = json.loads(json.dumps(statefulset))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)
    broken = json.loads(json.dumps(statefulset))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


# -- the chart's configuration is the gateway's ----------------------------------------------


@every_scenario
def test_rendered_config_passes_ce_gateway_validate_config(name: str, tmp_path: Path) -> None:
    rendered = scenario(name)
    checked = validate_as_mounted(rendered, tmp_path)
    assert checked.returncode == 0, checked.stderr
    config = yaml.safe_load(rendered.config_text)
    topics, subscriptions = len(config["topics"]), len(config["subscriptions"])
    assert f"ok ({topics} topics, {subscriptions} subscriptions)" in checked.stdout
    # The two keys the chart owns match the volume and the container's arguments.
    assert config["server"]["dataDir"] == "/data"
    assert config["server"]["host"] == "0.0.0.0"
    args = rendered.container["args"]
    assert args[args.index("--config") + 1] == "/etc/ce-gateway/config.yaml"
    assert args[args.index("--data-dir") + 1] == "/data"


def test_values_config_reaches_the_file_unchanged() -> None:
    config = yaml.safe_load(scenario("secrets-and-subscriptions").config_text)
    expected = json.loads(json.dumps(SUBSCRIBED_CONFIG))
    expected["server"].update(host="0.0.0.0", dataDir="/data")
    assert config == expected


def test_a_config_the_gateway_refuses_is_caught(tmp_path: Path) -> None:
    cyclic = {
        "topics": [{"name": "a"}, {"name": "b"}],
        "subscriptions": [
            {
                "name": "a-to-b",
                "topic": "a",
                "destination": {"http": {"url": "https://a.example/"}},
                "deadLetterTopic": "b",
            },
            {
                "name": "b-to-a",
                "topic": "b",
                "destination": {"http": {"url": "https://b.example/"}},
                "deadLetterTopic": "a",
            },
        ],
    }
    checked = validate_config(tmp_path, render({"config": cyclic}).config_text)
    assert checked.returncode == 2
    assert "subscriptions[1].deadLetterTopic" in checked.stderr


def test_a_secret_file_the_config_names_but_the_secret_lacks_is_caught(tmp_path: Path) -> None:
    lacking = {key: value for key, value in SECRETS.items() if key != "orders-signing"}
    rendered = render({"secrets": lacking, "config": SUBSCRIBED_CONFIG})
    checked = validate_as_mounted(rendered, tmp_path)
    assert checked.returncode == 2
    assert "subscriptions[0].signing.secretFile" in checked.stderr


def test_gateway_port_follows_config_server_port(tmp_path: Path) -> None:
    rendered = render({"config": {"server": {"port": 9090}}, "networkPolicy": NETWORK_POLICY})
    assert rendered.container["ports"] == [
        {"name": "http", "containerPort": 9090, "protocol": "TCP"}
    ]
    args = rendered.container["args"]
    assert args[args.index("--port") + 1] == "9090"
    assert yaml.safe_load(rendered.config_text)["server"]["port"] == 9090
    (rule,) = rendered.one("NetworkPolicy")["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9090, "protocol": "TCP"}]
    headless = rendered.one("Service", f"{FULLNAME}-headless")
    assert headless["spec"]["ports"][0]["port"] == 9090
    assert validate_config(tmp_path, rendered.config_text).returncode == 0


def test_default_map_ceiling_fits_the_volume() -> None:
    with helm.Chart.load(CHART) as chart:
        values = chart.values
    quantity = re.fullmatch(r"(\d+)Gi", values["persistence"]["size"])
    assert quantity, values["persistence"]["size"]
    volume = int(quantity.group(1)) * 2**30
    assert parse_size(values["config"]["server"]["maxMapSize"]) < volume


# -- S11: secrets ----------------------------------------------------------------------------


def test_secrets_live_in_a_secret_never_a_configmap() -> None:
    rendered = scenario("everything")
    secret = rendered.one("Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-secrets"
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == SECRETS
    for doc in rendered.manifests:
        if doc["kind"] != "Secret":
            text = yaml.safe_dump(doc)
            for value in SECRETS.values():
                assert value not in text, f"{doc['kind']} {doc['metadata']['name']} leaks it"
    assert all(value not in rendered.notes for value in SECRETS.values())
    # Mounted read-only as files under /secrets, which the config names.
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    assert mounts["secrets"] == {"name": "secrets", "mountPath": "/secrets", "readOnly": True}
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == f"{FULLNAME}-secrets"
    config = yaml.safe_load(rendered.config_text)
    files = [config["auth"]["publisherTokenFile"], config["auth"]["adminTokenFile"]]
    files += [s["signing"]["secretFile"] for s in config["subscriptions"]]
    for file in files:
        folder, _, key = file.rpartition("/")
        assert folder == "/secrets" and key in decoded, file
    assert not any("secret" in k.lower() for cm in rendered.kind("ConfigMap") for k in cm["data"])


def test_existing_secret_is_mounted_and_none_is_rendered() -> None:
    rendered = scenario("existing-secret")
    assert rendered.kind("Secret") == []
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "gw-tokens"
    assert "secret gw-tokens" in rendered.notes
    # existingSecret wins over inline secrets: nothing of theirs is rendered.
    both = render({"existingSecret": "gw-tokens", "secrets": SECRETS})
    assert both.kind("Secret") == []
    assert all(value not in json.dumps(both.manifests) for value in SECRETS.values())


def test_no_secret_volume_without_secrets() -> None:
    rendered = scenario("defaults")
    assert rendered.kind("Secret") == []
    assert "secrets" not in {v["name"] for v in rendered.pod["volumes"]}


def test_a_config_or_secret_change_rolls_the_pod() -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        meta: dict[str, str] = render(values).one("StatefulSet")["spec"]["template"]["metadata"]
        return dict(meta["annotations"])

    base = annotations({"secrets": SECRETS})
    rendered = render({"secrets": SECRETS})
    configmap = rendered.files["ce-gateway/templates/configmap.yaml"]
    assert base["checksum/config"] == hashlib.sha256(configmap.encode()).hexdigest()
    assert annotations({"secrets": SECRETS}) == base
    retention = {"config": {"topics": [{"name": "orders", "retention": "48h"}]}}
    changed = annotations({"secrets": SECRETS, **retention})
    assert changed["checksum/config"] != base["checksum/config"]
    assert changed["checksum/secrets"] == base["checksum/secrets"]
    rotated = annotations({"secrets": {**SECRETS, "admin": "rotated"}})
    assert rotated["checksum/secrets"] != base["checksum/secrets"]
    assert rotated["checksum/config"] == base["checksum/config"]


# -- S11: pod security -----------------------------------------------------------------------

RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standard `restricted` (baseline included) checks on a pod spec."""
    problems = []
    pod_context = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            problems.append(host)
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    if pod_context.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    if (pod_context.get("seccompProfile") or {}).get("type") == "Unconfined":
        problems.append("pod seccomp Unconfined")
    problems += [f"sysctl {sysctl['name']}" for sysctl in pod_context.get("sysctls") or []]
    containers = [
        *(pod.get("initContainers") or []),
        *pod["containers"],
        *(pod.get("ephemeralContainers") or []),
    ]
    for container in containers:
        problems += [f"{container['name']}: {p}" for p in container_violations(container, pod)]
    return problems


def container_violations(container: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    pod_context = pod.get("securityContext") or {}
    context = container.get("securityContext") or {}
    capabilities = context.get("capabilities") or {}
    seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
    checks = {
        "privileged": bool(context.get("privileged")),
        "allowPrivilegeEscalation not false": context.get("allowPrivilegeEscalation") is not False,
        "capabilities not dropping ALL": "ALL" not in (capabilities.get("drop") or []),
        "capabilities added": bool(set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}),
        "runAsNonRoot not true": context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        is not True,
        "runAsUser 0": context.get("runAsUser") == 0,
        "seccompProfile not RuntimeDefault/Localhost": seccomp.get("type")
        not in ("RuntimeDefault", "Localhost"),
        "procMount": context.get("procMount", "Default") != "Default",
        "hostPort": any(port.get("hostPort") for port in container.get("ports") or []),
    }
    return [problem for problem, failed in checks.items() if failed]


@every_scenario
def test_pod_is_admitted_under_the_restricted_standard(name: str) -> None:
    assert restricted_violations(scenario(name).pod) == []


@pytest.mark.parametrize(
    "mutation",
    [
        lambda pod: pod["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        lambda pod: pod["containers"][0]["securityContext"].pop("capabilities"),
        lambda pod: pod["containers"][0]["securityContext"].update(runAsNonRoot=False),
        lambda pod: pod["containers"][0]["securityContext"].update(
            seccompProfile={"type": "Unconfined"}
        ),
        lambda pod: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        lambda pod: pod.update(hostNetwork=True),
        lambda pod: pod["containers"][0]["ports"][0].update(hostPort=8080),
    ],
)
def test_the_restricted_check_catches_violations(mutation: Any) -> None:
    pod = json.loads(json.dumps(scenario("defaults").pod))
    mutation(pod)
    assert restricted_violations(pod) != []


@every_scenario
def test_security_context_is_hardened(name: str) -> None:
    rendered = scenario(name)
    pod_context = rendered.pod["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] > 0 and pod_context["runAsGroup"] > 0
    assert pod_context["fsGroup"] > 0  # the PVC and the secret files are the group's
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in rendered.pod["containers"] + rendered.pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] > 0
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert context["readOnlyRootFilesystem"] is True
    assert rendered.pod["automountServiceAccountToken"] is False
    # Writable places: /tmp an emptyDir, /data the PVC; nothing else.
    mounts = {m["mountPath"]: m for m in rendered.container["volumeMounts"]}
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/data"]["name"] == "data" and "data" not in volumes
    claims = [
        t["metadata"]["name"] for t in rendered.one("StatefulSet")["spec"]["volumeClaimTemplates"]
    ]
    assert claims == ["data"]
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
    assert writable == {"/tmp", "/data"}


def test_uid_is_configurable_but_never_root() -> None:
    rendered = render({"securityContext": {"runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000}})
    assert rendered.pod["securityContext"]["runAsUser"] == 2000
    assert rendered.container["securityContext"]["runAsUser"] == 2000
    assert restricted_violations(rendered.pod) == []


# -- S11 / R15: one replica, one RWO volume --------------------------------------------------


@every_scenario
def test_one_replica_on_one_read_write_once_volume(name: str) -> None:
    rendered = scenario(name)
    statefulset = rendered.one("StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    for kind in ("Deployment", "DaemonSet", "ReplicaSet", "PersistentVolumeClaim", "Job"):
        assert rendered.kind(kind) == [], kind
    assert not rendered.kind("HorizontalPodAutoscaler")
    headless = rendered.one("Service", f"{FULLNAME}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]


def test_storage_class_and_size_are_configurable() -> None:
    rendered = render({"persistence": {"size": "50Gi", "storageClassName": "local-nvme"}})
    (claim,) = rendered.one("StatefulSet")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "local-nvme"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


# -- probes ----------------------------------------------------------------------------------


@every_scenario
def test_liveness_is_healthz_and_readiness_is_readyz(name: str) -> None:
    container = scenario(name).container
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert container["resources"]["requests"] and container["resources"]["limits"]


async def test_probe_paths_answer_on_a_real_gateway(tmp_path: Path) -> None:
    container = scenario("defaults").container
    async with run_gateway(make_settings(tmp_path)) as gw:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            response = await gw.client.get(container[probe]["httpGet"]["path"])
            assert response.status_code == 200, (probe, response.text)


# -- S11: NetworkPolicy ----------------------------------------------------------------------


def admits(rule: dict[str, Any], address: ipaddress.IPv4Address) -> bool:
    """Whether an egress rule's peers include `address` (no `to` means every address)."""
    peers = rule.get("to")
    if not peers:
        return True
    for peer in peers:
        block = peer.get("ipBlock")
        if block is None:
            continue  # pod/namespace selectors select pods, never the metadata server
        network = ipaddress.ip_network(block["cidr"])
        if address.version == network.version and address in network:
            excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
            if not any(address in e for e in excepted):
                return True
    return False


def test_network_policy_is_off_by_default() -> None:
    assert scenario("defaults").kind("NetworkPolicy") == []


def test_network_policy_admits_only_the_gateway_port() -> None:
    policy = scenario("network-policy").one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ce-gateway",
        "app.kubernetes.io/instance": RELEASE,
    }
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert rule["from"] == NETWORK_POLICY["ingress"]["from"]


def test_network_policy_egress_is_dns_plus_the_subscribers() -> None:
    egress = scenario("network-policy").one("NetworkPolicy")["spec"]["egress"]
    dns, *subscribers = egress
    assert "to" not in dns  # DNS anywhere, the metadata IP included (GKE serves DNS there)
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert admits(dns, METADATA_IP)
    expected = NETWORK_POLICY["egress"]["subscribers"]
    assert [rule["to"][0]["ipBlock"]["cidr"] for rule in subscribers] == [
        s["cidr"] for s in expected
    ]
    for rule, given in zip(subscribers, expected, strict=True):
        ports = given.get("ports", [443, 80])
        assert rule["ports"] == [{"port": port, "protocol": "TCP"} for port in ports]


def test_metadata_ip_is_blocked_on_http_ports_only() -> None:
    egress = scenario("network-policy").one("NetworkPolicy")["spec"]["egress"]
    for rule in egress:
        ports = {port["port"] for port in rule["ports"]}
        if admits(rule, METADATA_IP):
            assert ports == {53}, rule  # only DNS may reach 169.254.169.254
        for peer in rule.get("to", []):
            block = peer["ipBlock"]
            network = ipaddress.ip_network(block["cidr"])
            for excepted in block.get("except", []):  # Kubernetes wants strict subsets
                sub = ipaddress.ip_network(excepted)
                assert sub.subnet_of(network) and sub != network  # type: ignore[arg-type]
    excepts = {
        rule["to"][0]["ipBlock"]["cidr"]: rule["to"][0]["ipBlock"].get("except")
        for rule in egress[1:]
    }
    assert excepts == {
        "10.20.0.0/16": None,
        "0.0.0.0/0": ["169.254.169.254/32"],
        "169.254.0.0/16": ["169.254.169.254/32"],
        "160.0.0.0/4": ["169.254.169.254/32"],
        "170.0.0.0/8": None,
        "fd00::/8": None,
    }
    assert not any(admits(rule, METADATA_IP) for rule in egress[1:])
    assert admits(egress[2], ipaddress.IPv4Address("93.184.216.34"))  # the internet stays open


def test_metadata_ip_alone_is_refused_as_a_subscriber() -> None:
    values = {
        "networkPolicy": {
            "enabled": True,
            "egress": {"subscribers": [{"cidr": "169.254.169.254/32"}]},
        }
    }
    with pytest.raises(helm.HelmRenderError) as refused:
        render(values)
    assert "subscribers[0].cidr" in str(refused.value)


def test_network_policy_without_subscribers_warns_in_notes() -> None:
    rendered = render({"networkPolicy": {"enabled": True}})
    assert len(rendered.one("NetworkPolicy")["spec"]["egress"]) == 1
    assert "cannot push to any subscriber" in rendered.notes
    assert "cannot push" not in scenario("network-policy").notes


# -- monitoring ------------------------------------------------------------------------------


def test_monitoring_objects_are_optional() -> None:
    defaults = scenario("defaults")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert defaults.kind(kind) == []
    assert [cm["metadata"]["name"] for cm in defaults.kind("ConfigMap")] == [FULLNAME]


def test_service_monitor_scrapes_the_api_service_once() -> None:
    rendered = scenario("monitoring")
    monitor = rendered.one("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        service["metadata"]["name"]
        for service in rendered.kind("Service")
        if selector.items() <= service["metadata"]["labels"].items()
    ]
    assert selected == [FULLNAME]  # not the headless one too (no double scrape)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def alert_rules(rendered: Rendered) -> list[dict[str, Any]]:
    (group,) = rendered.one("PrometheusRule")["spec"]["groups"]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def test_prometheus_rule_has_the_alerts_the_issue_asks_for() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules(scenario("monitoring"))}
    selector = f'job="{FULLNAME}",namespace="{NAMESPACE}"'
    assert (
        f"increase(cegateway_deadlettered_total{{{selector}}}[15m])) > 0"
        in exprs["CeGatewayDeadLettering"]
    )
    assert f"cegateway_deadletter_depth{{{selector}}}) > 100" in exprs["CeGatewayDeadLetterBacklog"]
    assert (
        f"cegateway_oldest_pending_age_seconds{{{selector}}}) > 900"
        in exprs["CeGatewayDeliveryLagging"]
    )
    assert f"cegateway_ready{{{selector}}}) == 0" in exprs["CeGatewayNotReady"]
    assert (
        f"cegateway_store_map_usage_ratio{{{selector}}}) > 0.8" in exprs["CeGatewayStoreNearlyFull"]
    )
    assert (
        f"increase(cegateway_events_dropped_total{{{selector}}}[15m])) > 0"
        in exprs["CeGatewayEventsDropped"]
    )
    assert exprs["CeGatewayAbsent"] == f"absent(up{{{selector}}})"
    fors = {rule["alert"]: rule.get("for") for rule in alert_rules(scenario("monitoring"))}
    assert fors["CeGatewayDeadLettering"] == "5m" and fors["CeGatewayAbsent"] == "5m"
    for rule in alert_rules(scenario("monitoring")):
        for text in rule["annotations"].values():
            assert "humanize }}" not in text and "{{ $value }}" not in text, "counts as integers"
    tuned = render(
        {
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "selector": 'service="events"',
                    "oldestPendingAgeSeconds": 60,
                }
            }
        }
    )
    lagging = {r["alert"]: r["expr"] for r in alert_rules(tuned)}["CeGatewayDeliveryLagging"]
    assert 'cegateway_oldest_pending_age_seconds{service="events"}) > 60' in lagging
    slower = render({"metrics": {"prometheusRule": {"enabled": True, "deadLetteringFor": "20m"}}})
    assert {r["alert"]: r.get("for") for r in alert_rules(slower)}[
        "CeGatewayDeadLettering"
    ] == "20m"


def test_no_absent_alert_for_a_gateway_scaled_to_zero() -> None:
    stopped = render({"replicaCount": 0, **MONITORING})
    assert "CeGatewayAbsent" not in {rule["alert"] for rule in alert_rules(stopped)}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "make install provides promtool (Debian package prometheus)"
    return found


def test_prometheus_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(scenario("monitoring").one("PrometheusRule")["spec"]))
    checked = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_alerts_fire_on_the_series_they_watch(tmp_path: Path) -> None:
    """promtool's rule unit tests over the rules as the chart renders them: each alert fires on
    this release's series, on time (after its `for:`), not on another release's, and with the
    annotations it renders (counts as integers: 3.125 dead letters by increase()'s
    extrapolation read "3", a depth of 1e6 reads "1000000")."""
    spec = scenario("monitoring").one("PrometheusRule")["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    ours = f'job="{FULLNAME}",namespace="{NAMESPACE}"'
    pod = f'{ours},pod="{FULLNAME}-0"'
    other = f'job="other",namespace="{NAMESPACE}",pod="other-0"'
    billing = f'{pod},subscription="billing",reason="permanent"'
    elsewhere = f'{other},subscription="x",reason="expired"'
    slow = f'{pod},subscription="slow"'
    at_pod = {"pod": f"{FULLNAME}-0"}

    def series(name: str, labels: str, values: str) -> dict[str, str]:
        return {"series": f"{name}{{{labels}}}", "values": values}

    def alert(name: str, at: str, *expected: tuple[dict[str, str], dict[str, str]]) -> Any:
        return {
            "eval_time": at,
            "alertname": name,
            "exp_alerts": [
                {"exp_labels": {"namespace": NAMESPACE, **labels}, "exp_annotations": notes}
                for labels, notes in expected
            ],
        }

    def notes(summary: str, description: str) -> dict[str, str]:
        return {"summary": summary, "description": description}

    dead_lettering = notes(
        "Subscription billing dead-lettered events (permanent)",
        "3 events of billing went to its dead-letter topic in the last 15 minutes. "
        "Browse them with `ce-gateway deadletters list TOPIC`.",
    )
    dropped = notes(
        "Subscription nodlt dropped events (exhausted)",
        "2 events of nodlt were given up in the last 15 minutes and are gone: it has no "
        "dead-letter topic. Give it a deadLetterTopic to keep them.",
    )
    backlog = notes(
        "Dead-letter topic dead holds 1000000 events",
        "Redrive or purge them: `ce-gateway deadletters redrive|purge dead`.",
    )
    lagging = notes(
        "Subscription slow has an event pending for 16m 40s",
        "Its destination keeps failing or is too slow; check cegateway_deliveries_total by "
        "outcome.",
    )
    not_ready = notes(
        f"ce-gateway {FULLNAME}-0 is not ready",
        "Publishers get 503 or no answer; see the pod's /readyz reasons and logs.",
    )
    absent = notes(
        f"No ce-gateway is scraped ({FULLNAME} in {NAMESPACE})",
        "Prometheus has no target for the gateway: the pod is gone or the ServiceMonitor "
        "selects nothing. Publishers get no answer.",
    )
    nearly_full = notes(
        "ce-gateway store is 90% full",
        "At server.maxMapSize publishes get 507. Raise maxMapSize (and the volume) or shorten "
        "retention.",
    )
    warning, critical = {"severity": "warning"}, {"severity": "critical"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series("cegateway_deadlettered_total", billing, "2x5 5x30"),
                    series("cegateway_deadlettered_total", elsewhere, "0x5 9x30"),
                    series(
                        "cegateway_events_dropped_total",
                        f'{pod},subscription="nodlt",reason="exhausted"',
                        "1x5 3x30",
                    ),
                    series("cegateway_events_dropped_total", elsewhere, "0x5 9x30"),
                    series("cegateway_deadletter_depth", f'{pod},topic="dead"', "1000000x30"),
                    series("cegateway_oldest_pending_age_seconds", slow, "0x5 1000x30"),
                    series("cegateway_ready", pod, "1x5 0x35"),
                    series("cegateway_ready", other, "0x40"),
                    series("up", pod, "1x20"),  # then the target is gone
                    series("cegateway_store_map_usage_ratio", pod, "0.5x5 0.9x30"),
                    series("cegateway_store_full", pod, "0x35"),
                ],
                "alert_rule_test": [
                    alert("CeGatewayDeadLettering", "4m"),
                    alert("CeGatewayDeadLettering", "9m"),  # pending: for 5m
                    alert(
                        "CeGatewayDeadLettering",
                        "12m",
                        (
                            {**warning, "subscription": "billing", "reason": "permanent"},
                            dead_lettering,
                        ),
                    ),
                    alert("CeGatewayDeadLettering", "30m"),  # nothing new for 15m: resolved
                    alert("CeGatewayEventsDropped", "4m"),
                    alert(
                        "CeGatewayEventsDropped",
                        "7m",
                        ({**warning, "subscription": "nodlt", "reason": "exhausted"}, dropped),
                    ),
                    alert("CeGatewayDeadLetterBacklog", "10m"),
                    alert(
                        "CeGatewayDeadLetterBacklog", "16m", ({**warning, "topic": "dead"}, backlog)
                    ),
                    alert("CeGatewayDeliveryLagging", "9m"),
                    alert(
                        "CeGatewayDeliveryLagging",
                        "12m",
                        ({**warning, "subscription": "slow"}, lagging),
                    ),
                    alert("CeGatewayNotReady", "9m"),
                    alert("CeGatewayNotReady", "12m", ({**critical, **at_pod}, not_ready)),
                    alert("CeGatewayAbsent", "20m"),
                    alert("CeGatewayAbsent", "28m"),  # gone since about 25m: pending
                    alert("CeGatewayAbsent", "33m", ({**critical, "job": FULLNAME}, absent)),
                    alert("CeGatewayStoreNearlyFull", "12m"),
                    alert("CeGatewayStoreNearlyFull", "17m", ({**warning, **at_pod}, nearly_full)),
                    alert("CeGatewayStoreFull", "20m"),
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    ran = subprocess.run(
        [promtool(), "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


# -- Grafana dashboard -----------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "dashboards" / "ce-gateway.json").read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    exprs = "\n".join(dashboard_exprs())
    for needle in (
        "rate(cegateway_events_published_total",
        "cegateway_deliveries_total",
        "cegateway_deliveries_pending",
        "cegateway_oldest_pending_age_seconds",
        "cegateway_deadletter_depth",
    ):
        assert needle in exprs, needle
    titles = [panel["title"] for panel in dashboard()["panels"]]
    assert len(titles) == len(set(titles))
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:panel_{index}", "expr": expr.replace("$namespace", ".*")}
        for index, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_ships_in_a_labelled_configmap_when_enabled() -> None:
    rendered = scenario("monitoring")
    configmap = rendered.one("ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["ce-gateway.json"]) == dashboard()
    kubernetes_validate.validate(configmap, KUBE_VERSION, strict=True)


async def test_every_metric_the_chart_watches_is_one_the_gateway_exposes(tmp_path: Path) -> None:
    rendered = scenario("monitoring")
    watched = set()
    for text in [*dashboard_exprs(), *(rule["expr"] for rule in alert_rules(rendered))]:
        watched |= set(re.findall(r"\bcegateway_[a-z_]+", text))
    assert len(watched) >= 10
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(422 if r.event_id == "bad" else 200)
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "dead"}],
            subscriptions=[subscription("billing", sub.url, deadLetterTopic="dead")],
        )
        async with run_gateway(settings) as gw:
            for event_id in ("a", "bad"):
                assert (await gw.publish("orders", event_id)).status_code == 202
            await settle(gw)
            exposition = (await gw.client.get("/metrics")).text
    exposed = {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert watched - exposed == set()


# -- NOTES -----------------------------------------------------------------------------------


def curl_commands(notes: str) -> Iterator[list[str]]:
    lines = iter(notes.splitlines())
    for line in lines:
        if "curl " in line:
            command = line[line.index("curl ") :].strip()
            while command.endswith("\\"):
                command = command[:-1] + " " + next(lines).strip()
            yield shlex.split(command)


async def test_notes_first_publish_is_accepted_by_a_gateway(tmp_path: Path) -> None:
    notes = scenario("defaults").notes
    assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME} 8080:8080" in notes
    publish, browse = list(curl_commands(notes))
    assert publish[:4] == ["curl", "-i", "-X", "POST"]
    url = publish[4]
    assert url.startswith("http://127.0.0.1:8080/topics/")
    headers = dict(publish[i + 1].split(": ", 1) for i, word in enumerate(publish) if word == "-H")
    body = publish[publish.index("-d") + 1]
    expected = notes.split("# HTTP/1.1 202", 1)[1].split("#", 1)[1].splitlines()[0].strip()
    async with run_gateway(make_settings(tmp_path)) as gw:
        response = await gw.client.post(
            url.removeprefix("http://127.0.0.1:8080"), headers=headers, content=body
        )
        assert response.status_code == 202, response.text
        assert response.json() == json.loads(expected)
        listed = await gw.client.get(browse[1].removeprefix("http://127.0.0.1:8080"))
        (event,) = listed.json()["events"]
        assert event["id"] == headers["ce-id"] and event["data"] == json.loads(body)


def test_notes_with_auth_send_the_publisher_token() -> None:
    notes = scenario("secrets-and-subscriptions").notes
    assert f"get secret {FULLNAME}-secrets -o jsonpath='{{.data.publisher}}'" in notes
    (publish, _) = list(curl_commands(notes))
    assert "authorization: Bearer $TOKEN" in publish
