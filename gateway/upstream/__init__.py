"""The upstream clients: unary requests on a keep-alive HTTP/1.1 pool, event streams on
aiohttp, and the one table that turns their failures into the gateway's errors."""
