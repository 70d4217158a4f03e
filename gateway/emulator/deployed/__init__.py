"""The `deployed` dialect: the Gagiteck service as it really runs (FastAPI, version 0.2.1).

With `EmulatorConfig(dialect="deployed")` the emulator serves the routes, shapes,
status codes and behaviours of the deployed service instead of those of the API
reference, and publishes a generated OpenAPI document at `GET /openapi.json`.
See docs/emulator.md ("Dialects").
"""
