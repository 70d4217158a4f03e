"""An in-memory emulator of the Gagiteck REST API (docs/rest-mapping.md), on aiohttp.

The public surface:

- `EmulatorConfig`, `Faults`: frozen, validated configuration (`ConfigError` when bad);
- `create_app(config)`: the aiohttp application;
- `running_emulator(config, host, port)`: an async context manager serving it, yielding a
  `RunningEmulator` with `.url`, `.app` and `.state`;
- `serve_forever(config, host, port)`: serve until cancelled (the CLI).

See docs/emulator.md.
"""

from __future__ import annotations

from .app import create_app
from .config import ConfigError, EmulatorConfig, Faults
from .server import RunningEmulator, running_emulator, serve_forever
from .state import EmulatorState

__all__ = [
    "ConfigError",
    "EmulatorConfig",
    "EmulatorState",
    "Faults",
    "RunningEmulator",
    "create_app",
    "running_emulator",
    "serve_forever",
]
