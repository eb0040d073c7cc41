"""Observability: Prometheus metrics, health and readiness endpoints, structured logs."""
