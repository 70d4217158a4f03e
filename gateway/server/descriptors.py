"""Which services are served: the contract's, descriptor sets', and reflection over them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gateway.transcoding.routes import http_rule

CONTRACT_PACKAGE: Final = "gagiteck.v1"
REFLECTION_V1: Final = "grpc.reflection.v1.ServerReflection"


def contract_services() -> list[ServiceDescriptor]:
    """Every service of the generated ``gagiteck.v1`` modules."""
    package = importlib.import_module(CONTRACT_PACKAGE)
    services: list[ServiceDescriptor] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"{CONTRACT_PACKAGE}.{info.name}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return services


def descriptor_set_services(paths: Iterable[str]) -> list[ServiceDescriptor]:
    """Load FileDescriptorSets into the default pool; return their annotated services."""
    pool = descriptor_pool.Default()
    services: list[ServiceDescriptor] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read descriptor set {path}: {exc.strerror}") from exc
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        for file_proto in fds.file:
            try:
                pool.FindFileByName(file_proto.name)
            except KeyError:
                pool.Add(file_proto)
        for file_proto in fds.file:
            file_desc = pool.FindFileByName(file_proto.name)
            for service in file_desc.services_by_name.values():
                if any(http_rule(m) is not None for m in service.methods):
                    services.append(service)
    return services


def enable_reflection(server: grpc.aio.Server, names: list[str]) -> None:
    """Serve reflection v1alpha and v1 (whose messages are wire-identical) for ``names``."""
    names = [*names, reflection.SERVICE_NAME, REFLECTION_V1]
    # duck-typed: the servicer calls only the pool's Find* methods
    pool = cast(descriptor_pool.DescriptorPool, MethodAwarePool(descriptor_pool.Default()))
    reflection.enable_server_reflection(names, server, pool=pool)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),)
    )


class MethodAwarePool:
    """A descriptor pool that also finds the file of a method (``pkg.Service.Method``), as
    ``grpcurl describe`` asks for it; the Python pool knows services, not their methods."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in service.methods_by_name:
                raise KeyError(symbol) from None
            return service.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)
