"""Server-streaming RPCs: the SSE parser and relay, watch pollers shared by their watchers,
and the verifier of the upstream's webhooks that wake them."""
