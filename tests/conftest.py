"""Shared fixtures: test-only descriptor sets compiled once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import ServiceDescriptor

from gateway.server.descriptors import descriptor_set_services
from tests.support.descriptor_sets import compile_descriptor_set


@pytest.fixture(scope="session")
def echo_descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("protos") / "echo.binpb"
    return compile_descriptor_set(out, "testonly/v1/echo.proto")


@pytest.fixture(scope="session")
def echo_service(echo_descriptor_set: Path) -> ServiceDescriptor:
    (service,) = descriptor_set_services([str(echo_descriptor_set)])
    return service
