"""gagiteck-gateway: a gRPC gateway in front of the Gagiteck REST API."""

__version__ = "0.1.0"
