"""Prometheus metrics of the gateway and the worker, declared once here."""
