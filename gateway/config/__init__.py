"""Configuration: the settings table, its parsers, the ``OTEL_*`` variables, and the frozen
:class:`~gateway.config.gateway.GatewayConfig` that hands each part its own settings."""
