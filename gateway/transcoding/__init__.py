"""From message to upstream request and back: ``google.api.http`` rules compiled into routes,
the JSON codec, the upstream request's headers, and the unary call."""
