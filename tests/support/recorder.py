"""Calling every RPC of the contract: stubs by service, and which RPCs a test exercised."""

from __future__ import annotations

from typing import Any, Final

from gagiteck.v1 import (
    access_pb2,
    access_pb2_grpc,
    agent_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    execution_pb2_grpc,
    platform_pb2,
    platform_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    webhook_pb2_grpc,
    workflow_pb2_grpc,
)

from tests.support.harness import RunningGateway

DEPLOYED_ONLY: Final[tuple[tuple[str, str, Any], ...]] = (
    ("PlatformService", "GetHealth", platform_pb2.GetHealthRequest()),
    ("PlatformService", "GetServiceInfo", platform_pb2.GetServiceInfoRequest()),
    ("AuthService", "UpdateCurrentUser", auth_pb2.UpdateCurrentUserRequest(name="x")),
    (
        "AuthService",
        "ChangePassword",
        auth_pb2.ChangePasswordRequest(current_password="a" * 8, new_password="b" * 8),
    ),
    ("SearchService", "GetSearchSuggestions", search_pb2.GetSearchSuggestionsRequest(q="x")),
    ("AccessService", "GetRole", access_pb2.GetRoleRequest(role_id="admin")),
    ("AccessService", "CreateRole", access_pb2.CreateRoleRequest(role=access_pb2.Role(name="x"))),
    ("AccessService", "UpdateRole", access_pb2.UpdateRoleRequest(role_id="r")),
    ("AccessService", "DeleteRole", access_pb2.DeleteRoleRequest(role_id="r")),
    ("AccessService", "ListPermissions", access_pb2.ListPermissionsRequest()),
)
"""The RPCs of operations only the deployed service has, with a request each."""


class Recorder:
    """Calls stubs and remembers which RPCs were exercised."""

    def __init__(self, gateway: RunningGateway) -> None:
        channel = gateway.channel
        self.stubs: dict[str, Any] = {
            "PlatformService": platform_pb2_grpc.PlatformServiceStub(channel),
            "AuthService": auth_pb2_grpc.AuthServiceStub(channel),
            "AgentService": agent_pb2_grpc.AgentServiceStub(channel),
            "WorkflowService": workflow_pb2_grpc.WorkflowServiceStub(channel),
            "ExecutionService": execution_pb2_grpc.ExecutionServiceStub(channel),
            "WebhookService": webhook_pb2_grpc.WebhookServiceStub(channel),
            "SearchService": search_pb2_grpc.SearchServiceStub(channel),
            "AccessService": access_pb2_grpc.AccessServiceStub(channel),
        }
        self.called: set[str] = set()
        self.metadata: tuple[tuple[str, str], ...] = ()

    async def __call__(self, service: str, method: str, request: Any) -> Any:
        self.called.add(f"gagiteck.v1.{service}.{method}")
        return await getattr(self.stubs[service], method)(
            request, metadata=self.metadata, timeout=10
        )

    async def stream(self, service: str, method: str, request: Any) -> list[Any]:
        self.called.add(f"gagiteck.v1.{service}.{method}")
        call = getattr(self.stubs[service], method)(request, metadata=self.metadata, timeout=10)
        return [message async for message in call]
