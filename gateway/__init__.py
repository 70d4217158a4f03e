"""gagiteck-gateway: a gRPC gateway in front of the Gagiteck REST API.

The public face of the package (pinned by a test): :class:`Gateway`, :class:`GatewayConfig`
and :func:`load_config`. Everything else is laid out by the stage of a call it serves —
``config``, ``cli``, ``server``, ``transcoding``, ``streaming``, ``traffic``, ``upstream``,
``telemetry`` — with what every stage shares at the top (``call``, ``errors``, ``clock``);
docs/ARCHITECTURE.md walks a call through them.
"""

from gateway.config.gateway import GatewayConfig, load_config
from gateway.server.gateway import Gateway
from gateway.version import __version__

__all__ = ["Gateway", "GatewayConfig", "__version__", "load_config"]
