"""One gateway, with its embedded emulator, for every doc test of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .gateway_process import running_gateway


@pytest.fixture(scope="session")
def gateway_target() -> Iterator[str]:
    with running_gateway() as target:
        yield target
