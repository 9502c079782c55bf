"""What several tests share: Kafka helpers, the TSDB and Alertmanager servers, record builders,
the JSON Schemas as validators. Import as ``from tests.support.<module> import ...``."""
