"""Settings blocks every process shares, and how settings are loaded: flags > environment
(METRICS_PIPELINE_...) > YAML file > defaults.

`CommonSettings`: the Kafka connection, topic creation defaults, the HTTP endpoint and logging.
`GroupMemberSettings`: what a consumer-group member adds (its group, session, topic creation).
Validated once at start-up; a bad value stops the process with a message naming the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from pipeline.errors import ConfigError
from pipeline.kafka.topology import DEFAULT_RETENTION, FOREVER, ROLES, TopicNameSettings
from pipeline.setting_types import duration_setting_ms, is_duration


class CommonSettings(BaseSettings):
    """Settings shared by every process that talks to Kafka and serves /metrics."""

    model_config = SettingsConfigDict(env_prefix="METRICS_PIPELINE_", extra="forbid")
    yaml_file: ClassVar[Path | None] = None

    bootstrap_servers: str = "localhost:9092"
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka settings for every client (security.protocol, sasl.*, ...); "
        "numbers and booleans are accepted and passed as librdkafka's strings.",
    )
    kafka_config_files: dict[str, Path] = Field(
        default_factory=dict,
        description="librdkafka setting → file holding its value (a mounted Secret), e.g. "
        "sasl.password: /var/run/secrets/kafka/password; read at start-up, trailing newline cut.",
    )
    topic_replication_factor: int = Field(
        3, ge=1, description="Replicas of every topic `topics create` makes (1 for one broker)."
    )
    topic_retention: dict[str, str] = Field(
        default_factory=dict,
        description="Role (raw, repartition, rollups, rollups.<res>, deadletter, anomalies) → "
        f"retention, e.g. 30d or {FOREVER}; default {DEFAULT_RETENTION}.",
    )
    topic_partitions_by_role: dict[str, int] = Field(
        default_factory=dict,
        description="Role → partitions instead of topic_partitions (repartition follows raw).",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(9464, ge=0, le=65535, description="0 disables the HTTP server.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "console"

    @field_validator("topic_retention")
    @classmethod
    def _retention(cls, value: dict[str, str]) -> dict[str, str]:
        for role, retention in value.items():
            _known_role(role)
            if role == "checkpoints":
                raise ValueError("the checkpoint topic is compacted: it has no retention")
            if retention != FOREVER:
                duration_setting_ms(retention)
        return value

    @field_validator("topic_partitions_by_role")
    @classmethod
    def _partitions(cls, value: dict[str, int]) -> dict[str, int]:
        for role, count in value.items():
            _known_role(role)
            if role == "repartition":
                raise ValueError("the repartition topic always has as many partitions as raw")
            if count < 1:
                raise ValueError(f"{role}: partitions must be >= 1")
        return value

    @field_validator("kafka_config", mode="before")
    @classmethod
    def _librdkafka_strings(cls, value: Any) -> Any:
        return librdkafka_strings(value)

    @model_validator(mode="after")
    def _one_bootstrap(self) -> Self:
        # The address may come from either place; a client must never dial the other one.
        in_config = self.kafka_config.get("bootstrap.servers")
        if in_config is not None and in_config != self.bootstrap_servers:
            if "bootstrap_servers" in self.model_fields_set:
                raise ValueError(
                    f"bootstrap_servers ({self.bootstrap_servers}) and kafka_config's "
                    f"bootstrap.servers ({in_config}) differ; set one of them"
                )
            self.bootstrap_servers = in_config
        return self

    def client_config(self) -> dict[str, str]:
        """The librdkafka settings every producer, consumer and admin client of this process
        starts from: bootstrap servers, kafka_config, and the values of kafka_config_files."""
        config = {**self.kafka_config, "bootstrap.servers": self.bootstrap_servers}
        for key, path in self.kafka_config_files.items():
            try:
                config[key] = path.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"kafka_config_files: cannot read {key} from {path}: {exc.strerror}"
                ) from None
        return config

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls.yaml_file))
        return tuple(sources)


class GroupMemberSettings(CommonSettings, TopicNameSettings):
    """What every consumer-group member shares: its group, session, the topics' names and
    whether it may create them."""

    group_id: str
    session_timeout_ms: int = Field(10_000, ge=1000)
    create_topics: bool = Field(
        False,
        description="Create missing topics (single replica); off: verify them, and name "
        "`metrics-pipeline topics create` when one is missing.",
    )
    topic_partitions: int = Field(8, ge=1, description="Partitions of topics this process creates.")


def librdkafka_strings(value: Any) -> Any:
    """YAML and JSON numbers and booleans as the strings librdkafka takes (true/false, 5000)."""
    if not isinstance(value, dict):
        return value
    converted: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            converted[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            converted[key] = str(item)
        else:
            converted[key] = item
    return converted


def _known_role(role: str) -> None:
    if role not in ROLES and not (role.startswith("rollups.") and is_duration(role[8:])):
        raise ValueError(f"unknown topic role {role!r}; roles: {', '.join(ROLES)}, rollups.<res>")


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], config_file: Path | None = None, **overrides: Any) -> S:
    """Build settings from flags (overrides that are not None), env and an optional YAML file."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")
    given = {k: v for k, v in overrides.items() if v is not None}
    cls.yaml_file = config_file
    try:
        return cls(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    except (SettingsError, yaml.YAMLError, ValueError, TypeError) as exc:
        # Raised by the sources themselves: unparsable env JSON, YAML syntax, a YAML list.
        raise ConfigError(f"cannot read settings: {exc}") from exc
    finally:
        cls.yaml_file = None
