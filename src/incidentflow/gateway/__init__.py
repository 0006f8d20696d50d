"""The ingest gateway: an ASGI app that validates webhooks and publishes them raw to Kafka."""
