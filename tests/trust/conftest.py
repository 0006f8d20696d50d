"""The trust suite runs on the integration tests' brokers, cluster and stacks."""

from tests.integration.conftest import kafka_bootstrap, own_broker, own_cluster, stack_factory

__all__ = ["kafka_bootstrap", "own_broker", "own_cluster", "stack_factory"]
