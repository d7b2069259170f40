"""The real FastAPI app driven in-process: its whole ASGI stack, no server, no port."""

import asyncio

import httpx


def post(app, path: str, **kwargs) -> httpx.Response:
    """POST to `app` at `path` (httpx's keyword arguments: json=, content=, headers=)."""

    async def send():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, **kwargs)

    return asyncio.run(send())
