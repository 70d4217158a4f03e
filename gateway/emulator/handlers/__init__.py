"""HTTP handlers, one module per service of docs/rest-mapping.md."""
