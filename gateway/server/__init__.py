"""The gRPC server: wiring and lifecycle, the generic handlers with the one error boundary,
the services served (descriptors, health, reflection), and the admin HTTP port."""
