"""Observability: span store, trace assembly, logs, suggestions, the HTTP API and the dashboard."""
