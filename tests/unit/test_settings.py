"""Settings: defaults, precedence (flags > env > YAML > defaults) and clear errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.common_settings import load_settings
from pipeline.core.aggregator import WindowConfig
from pipeline.core.decode import DecodeLimits
from pipeline.core.digest import DigestConfig
from pipeline.errors import ConfigError
from pipeline.settings import TierSettings, WorkerSettings

PREFIX = "METRICS_PIPELINE_"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No METRICS_PIPELINE_* variable of the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    yield
    assert WorkerSettings.yaml_file is None  # load_settings leaves no class state behind


def write_yaml(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- defaults -----------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings(WorkerSettings)
    assert s.bootstrap_servers == "localhost:9092"
    assert s.resolution == 10_000
    assert s.allowed_lateness == 5_000
    assert s.percentiles == [0.5, 0.9, 0.95, 0.99, 0.999]
    assert s.compression == 200
    assert s.input_topic == "metrics.raw"
    assert s.deadletter_topic == "metrics.deadletter"
    assert s.output_topic == "metrics.rollups.10s"
    assert s.window() == WindowConfig(10_000, 5_000)
    assert s.digest() == DigestConfig()
    assert s.limits() == DecodeLimits()


@pytest.mark.parametrize(
    ("resolution", "topic"),
    [
        ("10s", "metrics.rollups.10s"),
        ("60s", "metrics.rollups.1m"),
        ("1m", "metrics.rollups.1m"),
        ("300s", "metrics.rollups.5m"),
        ("3600s", "metrics.rollups.1h"),
        ("90s", "metrics.rollups.90s"),
        ("1d", "metrics.rollups.1d"),
    ],
)
def test_rollup_topic_uses_the_largest_exact_unit(resolution: str, topic: str) -> None:
    s = load_settings(WorkerSettings, resolution=resolution)
    assert s.output_topic == topic
    assert s.window().resolution_ms % 1000 == 0


def test_rollup_topic_prefix_is_configurable() -> None:
    s = load_settings(WorkerSettings, rollup_topic_prefix="prod.rollups.", resolution="60s")
    assert s.output_topic == "prod.rollups.1m"


def test_percentiles_are_sorted() -> None:
    s = load_settings(WorkerSettings, percentiles=[0.99, 0.5, 0.9])
    assert s.percentiles == [0.5, 0.9, 0.99]
    assert s.digest().percentile_names() == ["p50", "p90", "p99"]


def test_durations_are_milliseconds_inside() -> None:
    s = load_settings(WorkerSettings, idle_timeout="250ms", clock_jump="2m")
    assert (s.idle_timeout, s.clock_jump, s.max_age) == (250, 120_000, 21_600_000)
    off = load_settings(WorkerSettings, clock_jump="0s", watermark_alignment="0")
    assert (off.clock_jump, off.watermark_alignment) == (0, 0)
    assert load_settings(TierSettings, allowed_lateness="30s").allowed_lateness == 30_000
    assert load_settings(TierSettings).allowed_lateness is None


def test_a_dump_reads_back_to_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(
        TierSettings, idle_timeout="90s", allowed_lateness="250ms", chain=["10s", "1m", "1h"]
    )
    dumped = s.model_dump()
    assert dumped["idle_timeout"] == "90s" and dumped["allowed_lateness"] == "250ms"
    assert dumped["chain"] == ["10s", "1m", "1h"] and dumped["resolution"] == "1m"
    assert load_settings(TierSettings, **dumped) == s
    # As environment variables (a subprocess's settings): strings, JSON for lists.
    monkeypatch.setenv(PREFIX + "IDLE_TIMEOUT", dumped["idle_timeout"])
    monkeypatch.setenv(PREFIX + "CHAIN", '["10s", "1m", "1h"]')
    from_env = load_settings(TierSettings)
    assert (from_env.idle_timeout, from_env.chain) == (90_000, [10_000, 60_000, 3_600_000])
    assert WorkerSettings().model_dump(mode="json")["clock_jump"] == "1m"
    assert load_settings(WorkerSettings, clock_jump="0s").model_dump()["clock_jump"] == "0s"


def test_limits_follow_the_settings() -> None:
    s = load_settings(WorkerSettings, max_age="1h", max_future="30s", max_labels=4)
    assert s.limits() == DecodeLimits(max_labels=4, max_age_ms=3_600_000, max_future_ms=30_000)


# -- precedence ---------------------------------------------------------------------------------


def test_yaml_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "bootstrap_servers: yaml:9092\nresolution: 1m\npercentiles: [0.5, 0.99]\n"
        "kafka_config:\n  security.protocol: SASL_SSL\n",
    )
    s = load_settings(WorkerSettings, path)
    assert s.bootstrap_servers == "yaml:9092"
    assert s.resolution == 60_000
    assert s.percentiles == [0.5, 0.99]
    assert s.kafka_config == {"security.protocol": "SASL_SSL"}
    assert s.output_topic == "metrics.rollups.1m"
    assert s.allowed_lateness == 5_000  # not in the file: default


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "bootstrap_servers: yaml:9092\nresolution: 1m\n")
    monkeypatch.setenv("METRICS_PIPELINE_BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("METRICS_PIPELINE_PERCENTILES", "[0.25, 0.75]")
    monkeypatch.setenv("METRICS_PIPELINE_COMPRESSION", "300")
    s = load_settings(WorkerSettings, path)
    assert s.bootstrap_servers == "env:9092"
    assert s.resolution == 60_000  # only in the file
    assert s.percentiles == [0.25, 0.75]
    assert s.compression == 300


def test_env_prefix_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("metrics_pipeline_resolution", "30s")
    assert load_settings(WorkerSettings).resolution == 30_000


def test_flags_override_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "bootstrap_servers: yaml:9092\nresolution: 1m\ngroup_id: g-yaml\n")
    monkeypatch.setenv("METRICS_PIPELINE_BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("METRICS_PIPELINE_RESOLUTION", "5m")
    s = load_settings(WorkerSettings, path, bootstrap_servers="flag:9092", resolution=None)
    assert s.bootstrap_servers == "flag:9092"  # flag > env > yaml
    assert s.resolution == 300_000  # flag not given (None): env > yaml
    assert s.group_id == "g-yaml"  # only in the file
    assert s.output_topic == "metrics.rollups.5m"


def test_a_flag_overrides_a_bad_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PIPELINE_RESOLUTION", "10x")
    assert load_settings(WorkerSettings, resolution="1m").resolution == 60_000


def test_yaml_file_is_not_sticky(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "resolution: 1m\n")
    assert load_settings(WorkerSettings, path).resolution == 60_000
    assert load_settings(WorkerSettings).resolution == 10_000


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(WorkerSettings, write_yaml(tmp_path, "")).resolution == 10_000


# -- errors -------------------------------------------------------------------------------------


def config_error(*args: object, **flags: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(WorkerSettings, *args, **flags)  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize("bad", ["10x", "", "ten seconds", "0s", "-5s", "1.5s"])
def test_bad_resolution_flag(bad: str) -> None:
    message = config_error(resolution=bad)
    assert "resolution" in message and "not a duration" in message


def test_a_bare_number_is_refused_with_a_request_for_a_unit(tmp_path: Path) -> None:
    # YAML reads `resolution: 10` as the number 10; taken as milliseconds it would be a trap.
    message = config_error(write_yaml(tmp_path, "resolution: 10\n"))
    assert "resolution" in message and "10 has no unit" in message and "10s" in message
    assert "no unit" in config_error(idle_timeout="30")
    assert "no unit" in config_error(clock_jump=60)


def test_bad_duration_names_the_setting() -> None:
    assert "allowed_lateness" in config_error(allowed_lateness="5 sec")
    assert "max_age" in config_error(max_age="1y")


def test_bad_resolution_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PIPELINE_RESOLUTION", "10x")
    message = config_error()
    assert "resolution" in message and "10x" in message


def test_bad_resolution_from_yaml(tmp_path: Path) -> None:
    message = config_error(write_yaml(tmp_path, "resolution: 10x\n"))
    assert "resolution" in message and "10x" in message


@pytest.mark.parametrize(
    "bad", [[1.5], [0.0], [1.0], [-0.5], [], [0.5, 0.5], [0.99, 0.99000000001]]
)
def test_bad_percentiles(bad: list[float]) -> None:
    assert "percentiles" in config_error(percentiles=bad)


def test_bad_percentiles_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PIPELINE_PERCENTILES", "[1.5]")
    assert "percentiles" in config_error()


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    message = config_error(write_yaml(tmp_path, "resolution: 1m\nresolutoin: 5m\n"))
    assert "resolutoin" in message


def test_unknown_flag() -> None:
    assert "no_such_setting" in config_error(no_such_setting=1)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = config_error(missing)
    assert "not found" in message and str(missing) in message


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    assert "not found" in config_error(tmp_path)


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        ({"compression": 5}, "compression"),
        ({"http_port": 70000}, "http_port"),
        ({"log_level": "verbose"}, "log_level"),
        ({"late_policy": "drop"}, "late_policy"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_message_bytes": 10}, "max_message_bytes"),
    ],
)
def test_out_of_range_values_name_the_setting(flags: dict[str, object], setting: str) -> None:
    assert setting in config_error(**flags)


def test_bad_integer_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PIPELINE_HTTP_PORT", "abc")
    assert "http_port" in config_error()


@pytest.mark.parametrize("resolution", ["1500ms", "250ms"])
def test_resolution_must_be_whole_seconds(resolution: str) -> None:
    s = load_settings(WorkerSettings, resolution=resolution)  # a valid duration ...
    with pytest.raises(ConfigError, match="whole number of seconds"):
        s.window()  # ... but not a valid window size


# -- errors of the sources themselves --------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["env_percentiles_not_json", "yaml_syntax_error", "yaml_top_level_list"]
)
def test_source_errors_are_config_errors(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = None
    if case == "env_percentiles_not_json":
        monkeypatch.setenv("METRICS_PIPELINE_PERCENTILES", "0.5,0.9,0.99")
    elif case == "yaml_syntax_error":
        path = write_yaml(tmp_path, "resolution: [10s\n")
    else:
        path = write_yaml(tmp_path, "- resolution\n- 10s\n")
    # These escaped as SettingsError / yaml.ParserError / ValueError (a CLI traceback).
    with pytest.raises(ConfigError):
        load_settings(WorkerSettings, path)


def test_tier_chain_steps_double_their_idle_timeout_and_name_their_groups() -> None:
    steps = TierSettings(idle_timeout="30s").steps()
    assert [(s.input_resolution, s.resolution) for s in steps] == [
        (10_000, 60_000),
        (60_000, 300_000),
        (300_000, 3_600_000),
    ]
    assert [s.idle_timeout for s in steps] == [30_000, 60_000, 120_000]
    assert [s.consumer_group for s in steps] == [
        "metrics-pipeline-tier-1m",
        "metrics-pipeline-tier-5m",
        "metrics-pipeline-tier-1h",
    ]
    assert steps[0].source_topic == "metrics.rollups.10s"
    assert steps[0].output_topic == "metrics.rollups.1m"
    assert steps[2].tier().allowed_lateness_ms == 300_000  # one input window by default


@pytest.mark.parametrize("chain", [["10s"], ["1m", "10s"], ["10s", "25s"]])
def test_a_tier_chain_must_grow_by_whole_multiples(chain: list[str]) -> None:
    with pytest.raises(ValidationError):
        TierSettings(chain=chain)


# -- Kafka client settings ----------------------------------------------------------------------


def test_yaml_numbers_and_booleans_become_librdkafka_strings(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "kafka_config:\n  socket.timeout.ms: 5000\n  enable.ssl.certificate.verification: false\n"
        "  sasl.mechanism: SCRAM-SHA-512\n",
    )
    s = load_settings(WorkerSettings, path)
    assert s.kafka_config == {
        "socket.timeout.ms": "5000",
        "enable.ssl.certificate.verification": "false",
        "sasl.mechanism": "SCRAM-SHA-512",
    }


def test_bootstrap_only_in_kafka_config_reaches_every_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PREFIX + "KAFKA_CONFIG", '{"bootstrap.servers": "kafka-0:9093"}')
    s = load_settings(WorkerSettings)
    assert s.bootstrap_servers == "kafka-0:9093"
    assert s.client_config()["bootstrap.servers"] == "kafka-0:9093"


def test_two_different_bootstrap_addresses_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PREFIX + "KAFKA_CONFIG", '{"bootstrap.servers": "kafka-0:9093"}')
    with pytest.raises(ConfigError, match="differ"):
        load_settings(WorkerSettings, bootstrap_servers="other:9092")


def test_secrets_come_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")  # as a mounted Secret often ends
    path = write_yaml(
        tmp_path,
        "kafka_config:\n  sasl.username: metrics\n"
        f"kafka_config_files:\n  sasl.password: {secret}\n",
    )
    config = load_settings(WorkerSettings, path).client_config()
    assert config["sasl.password"] == "s3cret"
    assert config["sasl.username"] == "metrics"


def test_unreadable_secret_file_names_the_setting(tmp_path: Path) -> None:
    s = load_settings(WorkerSettings, kafka_config_files={"sasl.password": tmp_path / "absent"})
    with pytest.raises(ConfigError, match=r"sasl\.password .*absent"):
        s.client_config()


def test_processes_verify_topics_by_default() -> None:
    assert load_settings(WorkerSettings).create_topics is False
    assert load_settings(TierSettings).create_topics is False


def test_topic_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown topic role"):
        load_settings(WorkerSettings, topic_retention={"rawest": "1d"})
    with pytest.raises(ConfigError, match="compacted"):
        load_settings(WorkerSettings, topic_retention={"checkpoints": "1d"})
    with pytest.raises(ConfigError, match="as many partitions as raw"):
        load_settings(WorkerSettings, topic_partitions_by_role={"repartition": 3})
