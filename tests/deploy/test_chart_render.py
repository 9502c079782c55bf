"""The Helm chart rendered by the real Helm engine for a matrix of values: every object valid
against the Kubernetes OpenAPI schemas, pods hardened and probed, Services, ServiceMonitors and
PodDisruptionBudgets pointing at their pods, credentials only from Secrets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.chart import (
    CHART,
    by_name,
    helm,
    load_chart,
    notes,
    of_kind,
    render,
    settings_files,
    validate_kubernetes,
    workloads,
)
from tests.deploy.values_matrix import EVERYTHING, MATRIX, PROCESSES_OFF, TIER_STEPS, only

CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # not in the core OpenAPI schemas


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {case: render(values) for case, values in MATRIX.items()}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_object_is_valid_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], case: str
) -> None:
    objects = rendered[case]
    assert objects
    for manifest in objects:
        if manifest["kind"] not in CRD_KINDS:
            validate_kubernetes(manifest)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


def test_helm_lint_is_clean() -> None:
    for values in (MATRIX["defaults"], EVERYTHING, TIER_STEPS):
        report = helm.lint(CHART, values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], report


def test_each_process_renders_alone(rendered: dict[str, list[dict[str, Any]]]) -> None:
    expected = {
        "only-worker": ("Deployment", "worker"),
        "only-tier": ("Deployment", "tier"),
        "only-detect": ("Deployment", "detect"),
        "only-sinks.remoteWrite": ("Deployment", "sink-remote-write"),
        "only-sinks.local": ("StatefulSet", "sink-local"),
        "only-alertBridge": ("Deployment", "alert-bridge"),
    }
    for case, (kind, suffix) in expected.items():
        objects = rendered[case]
        assert [w["kind"] for w in workloads(objects)] == [kind], case
        by_name(objects, kind, suffix)
        by_name(objects, "Service", suffix)
        by_name(objects, "PodDisruptionBudget", suffix)
        assert list(settings_files(objects)) == [f"{suffix}.yaml"], case
    assert not workloads(rendered["nothing"])


def test_pods_are_hardened_and_probed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for case, objects in rendered.items():
        for w in workloads(objects):
            pod = w["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            (container,) = pod["containers"]
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, case
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert container["ports"] == [
                {"name": "http", "containerPort": 9464, "protocol": "TCP"}
            ]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, "a read-only root needs a writable /tmp"
            assert pod["terminationGracePeriodSeconds"] >= 30


def test_services_monitors_and_budgets_select_their_pods(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["everything"]
    monitors = of_kind(objects, "ServiceMonitor")
    assert len(monitors) == len(workloads(objects)) == 6
    for w in workloads(objects):
        pod_labels = w["spec"]["template"]["metadata"]["labels"]
        suffix = w["metadata"]["name"].removeprefix("mp-metrics-pipeline-")
        service = by_name(objects, "Service", suffix)
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        budget = by_name(objects, "PodDisruptionBudget", suffix)
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        monitor = by_name(objects, "ServiceMonitor", suffix)
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
        # The dashboards and rules select on `process`, copied from the Service's label.
        process = service["metadata"]["labels"]["metrics-pipeline/process"]
        assert process == w["spec"]["template"]["spec"]["containers"][0]["name"]
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "process"
        assert relabel["sourceLabels"] == [
            "__meta_kubernetes_service_label_metrics_pipeline_process"
        ]


def test_local_sink_is_one_statefulset_with_a_volume(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    sts = by_name(rendered["everything"], "StatefulSet", "sink-local")
    assert sts["spec"]["replicas"] == 1
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "gp3"
    service = by_name(rendered["everything"], "Service", "sink-local")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"


def test_workers_spread_over_zones(rendered: dict[str, list[dict[str, Any]]]) -> None:
    worker = by_name(rendered["defaults"], "Deployment", "worker")
    terms = worker["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "topology.kubernetes.io/zone"
    selector = terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector.items() <= worker["spec"]["template"]["metadata"]["labels"].items()


def test_tier_steps_are_one_deployment_each(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployments = workloads(rendered["tier-steps"])
    steps = {d["metadata"]["name"].removeprefix("mp-metrics-pipeline-"): d for d in deployments}
    assert sorted(steps) == ["tier-1h", "tier-1m", "tier-5m"]
    assert steps["tier-1m"]["spec"]["replicas"] == 3 and steps["tier-5m"]["spec"]["replicas"] == 1
    args = {k: d["spec"]["template"]["spec"]["containers"][0]["args"] for k, d in steps.items()}
    assert args["tier-1m"][3:] == ["--from", "10s", "--to", "1m", "--idle-timeout", "60s"]
    assert args["tier-5m"][3:] == ["--from", "1m", "--to", "5m", "--idle-timeout", "120s"]
    assert args["tier-1h"][3:] == ["--from", "5m", "--to", "1h", "--idle-timeout", "240s"]


def test_credentials_come_only_from_secrets(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["everything"]
    text = repr(objects)
    assert "password" not in "".join(settings_files(objects).values())
    for w in workloads(objects):
        container = w["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "kafka-user",
            "key": "password",
        }
        assert "$(KAFKA_SASL_PASSWORD)" in env["METRICS_PIPELINE_KAFKA_CONFIG"]["value"]
    rw = by_name(objects, "Deployment", "sink-remote-write")
    env = {e["name"]: e for e in rw["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["METRICS_PIPELINE_BASIC_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "vm-auth"
    )
    volumes = {v["name"]: v for v in rw["spec"]["template"]["spec"]["volumes"]}
    assert volumes["http-tls"]["secret"]["secretName"] == "vm-ca"
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-ca"
    assert "Secret" not in {o["kind"] for o in objects}, "the chart never writes a Secret"
    assert "kafka-user" in text


def test_topics_job_is_a_hook_and_off_by_default(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    assert not of_kind(rendered["defaults"], "Job")
    (job,) = of_kind(rendered["everything"], "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["topics", "create"]
    hook_maps = [
        o
        for o in of_kind(rendered["everything"], "ConfigMap")
        if o["metadata"].get("annotations", {}).get("helm.sh/hook")
    ]
    assert len(hook_maps) == 1, "the Job's settings must exist before the release's ConfigMap"


def test_prometheus_rule_and_dashboards(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (rule,) = of_kind(rendered["everything"], "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert "MetricsPipelineSinkPaused" in alerts
    dashboards = [
        o
        for o in of_kind(rendered["everything"], "ConfigMap")
        if "grafana_dashboard" in (o["metadata"]["labels"])
    ]
    assert len(dashboards) == 2
    assert not of_kind(rendered["defaults"], "PrometheusRule")


def test_replicas_beyond_partitions_are_refused() -> None:
    chart = load_chart()
    with pytest.raises(helm.HelmRenderError, match=r"worker: 9 replicas but topics.rawPartitions"):
        chart.render({"worker": {"replicas": 9}}, name="mp", namespace="x")
    values = copy.deepcopy(TIER_STEPS)
    values["tier"]["stepReplicas"] = {"5m": 20}
    with pytest.raises(helm.HelmRenderError, match=r"tier-5m: 20 replicas but topics.partitions"):
        chart.render(values, name="mp", namespace="x")
    render({"worker": {"replicas": 16}, "topics": {"rawPartitions": 16}})


def test_a_misspelled_key_fails_install() -> None:
    chart = load_chart()
    for typo in (
        {"worker": {"replica": 3}},
        {"sinks": {"remoteWrite": {"enable": True}}},
        {"kafka": {"bootstrapServer": "kafka:9092"}},
        {"serviceMonitor": {"enabled": "yes"}},
        {"tier": {"mode": "chains"}},
    ):
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(typo)
    chart.validate_schema(EVERYTHING)


def test_required_urls_are_enforced() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"sinks\.remoteWrite\.url is required"):
        load_chart().render({"sinks": {"remoteWrite": {"enabled": True}}}, name="mp")
    with pytest.raises(helm.HelmRenderError, match=r"alertBridge\.alertmanagerUrl is required"):
        load_chart().render({"alertBridge": {"enabled": True}}, name="mp")


def test_notes_name_every_workload() -> None:
    text = notes({**PROCESSES_OFF, **only("sinks.local")})
    assert "StatefulSet mp-metrics-pipeline-sink-local" in text
    assert "metrics-pipeline query" in text
