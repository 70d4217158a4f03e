"""The gateway's version: one home, read by the package metadata and the User-Agent."""

__version__ = "0.1.0"
