"""Traces, metrics and logs: tracing set-up and head sampling, one record per call (server
side) and per upstream attempt (client side), metrics, logs, and redaction."""
