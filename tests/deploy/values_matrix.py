"""Chart values the tests render: the defaults, every process alone, everything on with every
kind of credential, and one Deployment per tier step."""

from __future__ import annotations

from typing import Any

RW_URL = "http://vminsert.monitoring:8480/insert/0/prometheus/api/v1/write"
AM_URL = "http://alertmanager-operated.monitoring:9093"

PROCESSES_OFF: dict[str, Any] = {
    "worker": {"enabled": False},
    "tier": {"enabled": False},
    "detect": {"enabled": False},
    "sinks": {"remoteWrite": {"enabled": False}, "local": {"enabled": False}},
    "alertBridge": {"enabled": False},
}


def only(process: str) -> dict[str, Any]:
    """Every process off except `process` (a values path like sinks.local)."""
    values: dict[str, Any] = {
        "worker": {"enabled": False},
        "tier": {"enabled": False},
        "detect": {"enabled": False},
        "sinks": {
            "remoteWrite": {"enabled": False, "url": RW_URL},
            "local": {"enabled": False},
        },
        "alertBridge": {"enabled": False, "alertmanagerUrl": AM_URL},
    }
    block = values
    for part in process.split("."):
        block = block[part]
    block["enabled"] = True
    return values


EVERYTHING: dict[str, Any] = {
    "kafka": {
        "bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
        "config": {"client.rack": "eu-west-1a"},
        "sasl": {"existingSecret": "kafka-user"},
        "tls": {"existingSecret": "kafka-ca", "certKey": "tls.crt", "keyKey": "tls.key"},
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True},
    "dashboards": {"enabled": True},
    "topicsJob": {"enabled": True},
    "sinks": {
        "remoteWrite": {
            "enabled": True,
            "url": RW_URL,
            "replicas": 2,
            "auth": {
                "basicAuth": {"username": "pipeline", "existingSecret": "vm-auth"},
                "tls": {"existingSecret": "vm-ca"},
            },
            "config": {"max_samples_per_request": 5000},
        },
        "local": {"enabled": True, "persistence": {"size": "5Gi", "storageClass": "gp3"}},
    },
    "alertBridge": {
        "enabled": True,
        "alertmanagerUrl": AM_URL,
        "dashboardUrlTemplate": "https://grafana/d/x?var-service={service}",
        "auth": {"bearerToken": {"existingSecret": "am-token"}},
        "config": {"extra_labels": {"team": "sre"}},
    },
    "worker": {"replicas": 8, "config": {"late_policy": "count", "max_labels": 24}},
    "detect": {"config": {"history": 30}},
}

TIER_STEPS: dict[str, Any] = {
    "tier": {"mode": "steps", "stepReplicas": {"1m": 3}},
    "worker": {"enabled": False},
    "detect": {"enabled": False},
}

MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": EVERYTHING,
    "tier-steps": TIER_STEPS,
    "nothing": PROCESSES_OFF,
    **{
        f"only-{p}": only(p)
        for p in ("worker", "tier", "detect", "sinks.remoteWrite", "sinks.local", "alertBridge")
    },
}
