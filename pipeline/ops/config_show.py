"""`metrics-pipeline config show [COMMAND]`: the settings a command would run with, each with
where it came from (flag, env, file, default), secrets masked."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import SecretStr

from pipeline.common_settings import CommonSettings, load_settings
from pipeline.errors import ConfigError

ENV_PREFIX: Final = "METRICS_PIPELINE_"
MASK: Final = "***"
#: Setting names and librdkafka keys whose values are secrets.
_SECRET: Final = re.compile(r"password|secret|token|credential|private|\.pem$|oauthbearer\.config")


@dataclass(frozen=True)
class ShownSetting:
    name: str
    value: Any
    source: str  # flag | env | file | default


def settings_class(command: str) -> type[CommonSettings]:
    """The settings class a command reads (sub-commands joined by a dash: sink-local)."""
    from pipeline.alerting import AlertBridgeSettings
    from pipeline.settings import DetectSettings, TierSettings, TopologySettings, WorkerSettings
    from pipeline.sinks.remote_write import RemoteWriteSettings
    from pipeline.sinks.settings import LocalSinkSettings

    classes: dict[str, type[CommonSettings]] = {
        "worker": WorkerSettings,
        "tier": TierSettings,
        "detect": DetectSettings,
        "sink-remote-write": RemoteWriteSettings,
        "sink-local": LocalSinkSettings,
        "alert-bridge": AlertBridgeSettings,
        "topics": TopologySettings,
        "tail": CommonSettings,
        "load": WorkerSettings,
    }
    try:
        return classes[command]
    except KeyError:
        raise ConfigError(f"no settings for {command!r}; one of: {', '.join(classes)}") from None


def effective_settings(
    cls: type[CommonSettings], config_file: Path | None, flags: Mapping[str, Any]
) -> list[ShownSetting]:
    settings = load_settings(cls, config_file, **flags)
    in_file = _file_keys(config_file)
    env = {k.upper() for k in os.environ}
    # Dumped, not read: durations are shown as written ("10s"), not as their milliseconds.
    dumped = settings.model_dump()
    shown = []
    for name in sorted(type(settings).model_fields):
        if flags.get(name) is not None:
            source = "flag"
        elif ENV_PREFIX + name.upper() in env:
            source = "env"
        elif name in in_file:
            source = "file"
        else:
            source = "default"
        shown.append(ShownSetting(name, masked(name, dumped[name]), source))
    return shown


def _file_keys(config_file: Path | None) -> set[str]:
    if config_file is None:
        return set()
    loaded = yaml.safe_load(config_file.read_text()) or {}
    return set(loaded) if isinstance(loaded, dict) else set()


def masked(name: str, value: Any) -> Any:
    """`value` with secrets replaced: secret-named settings, and secret-named entries of
    mappings (kafka_config's sasl.password, an Authorization header)."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Path):  # a secret's file name is not the secret
        return str(value)
    if isinstance(value, dict):
        return {k: masked(str(k), v) for k, v in value.items()}
    if value is not None and _SECRET.search(name.lower()) and not name.endswith("_file"):
        return MASK
    if name.lower() == "authorization":
        return MASK
    return value
