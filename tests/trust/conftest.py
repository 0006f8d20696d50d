"""The trust suite runs on the integration tests' brokers and stacks."""

from tests.integration.conftest import kafka_bootstrap, own_broker, stack_factory

__all__ = ["kafka_bootstrap", "own_broker", "stack_factory"]
