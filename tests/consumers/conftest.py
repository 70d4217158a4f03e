"""One gateway, with its embedded emulator, for the clients built from docs/consumers.md."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docs.gateway_process import running_gateway


@pytest.fixture(scope="session")
def gateway_target() -> Iterator[str]:
    with running_gateway() as target:
        yield target
