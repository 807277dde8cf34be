"""Request dependencies, as ``Annotated`` aliases the routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.state import GatewayState


# Async on purpose: FastAPI runs plain-def dependencies in a thread pool, a hop per request.
async def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def get_tenant(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    state: GatewayState = request.app.state.gateway
    return await state.auth.tenant_for(authorization)


TenantDep = Annotated[str, Depends(get_tenant)]
