"""Runnable code for the page's current inputs, against the server as it is: curl against
POST /fal-ai/svd; Python with fal-client where it can reach the server (over https), else
plain httpx; JavaScript @fal-ai/client through the app's proxy route.

Files on the page go in as data: URIs: the file itself, or, when it is over MAX_EMBED bytes,
the picture (and mask) as the model gets them (fitted to the video size), which gives the
same video since fitting a fitted picture changes nothing.
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
from pathlib import Path

from PIL import Image

from svd.fetch import is_http

APP = "fal-ai/svd"
MAX_EMBED = 1_000_000  # bytes of a file put in a snippet as it is


def data_uri(path: str, fitted: Image.Image | None = None) -> str:
    """A page file as a data: URI (http(s) URLs are kept as they are)."""
    if is_http(path):
        return path
    raw = Path(path).read_bytes()
    if len(raw) > MAX_EMBED and fitted is not None:
        buffer = io.BytesIO()
        fitted.save(buffer, "PNG")
        raw, kind = buffer.getvalue(), "image/png"
    else:
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(raw).decode()}"


def curl(body: dict, base: str, keyed: bool) -> str:
    key = '  -H "Authorization: Key $SVD_API_KEY" \\\n' if keyed else ""
    return (
        f"curl -sS -X POST '{base}/{APP}' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"{key}"
        "  --data-binary @- <<'JSON'\n"
        f"{json.dumps(body, indent=2)}\n"
        "JSON\n"
    )


def python(body: dict, base: str, queue: str | None, keyed: bool) -> str:
    """fal-client over https; plain httpx otherwise (fal-client speaks https only)."""
    if not base.startswith("https://"):
        return python_httpx(body, base, keyed)
    host = base.split("://", 1)[-1]
    queue_host = queue.split("://", 1)[-1] if queue else f"{host}/queue"
    if keyed:
        key = "# FAL_KEY in the environment is sent as this server's key (SVD_API_KEY)\n"
    else:
        key = 'os.environ.setdefault("FAL_KEY", "unused")  # this server asks for no key\n'
    return (
        "# pip install fal-client\n"
        "import json\nimport os\n\n"
        "# fal-client reads these when it is imported: point it at this server\n"
        f'os.environ["FAL_RUN_HOST"] = "{host}"\n'
        f'os.environ["FAL_QUEUE_RUN_HOST"] = "{queue_host}"\n'
        f"{key}\n"
        "import fal_client  # noqa: E402\n\n"
        f"arguments = json.loads(r'''{json.dumps(body, indent=4)}''')\n"
        f'result = fal_client.run("{APP}", arguments=arguments)\n'
        'print(result["image"]["url"], result["seed"])\n'
    )


def python_httpx(body: dict, base: str, keyed: bool) -> str:
    key = ""
    if keyed:
        key = 'headers["Authorization"] = f"Key {os.environ[\'SVD_API_KEY\']}"\n'
    return (
        "# pip install httpx   (this server speaks plain http, which fal-client does not)\n"
        "import json\nimport os\n\nimport httpx\n\n"
        f"arguments = json.loads(r'''{json.dumps(body, indent=4)}''')\n"
        "headers = {}\n"
        f"{key}"
        f'answer = httpx.post("{base}/{APP}", json=arguments, headers=headers, timeout=900)\n'
        "answer.raise_for_status()  # a 422 names the field at fault\n"
        "result = answer.json()\n"
        'print(result["image"]["url"], result["seed"])\n'
    )


def javascript(body: dict, base: str, keyed: bool) -> str:
    key = "// FAL_KEY in the environment is sent as this server's key\n" if keyed else ""
    return (
        "// npm install @fal-ai/client   (then: node snippet.mjs)\n"
        'import { fal } from "@fal-ai/client";\n\n'
        "// fal's proxy protocol, served by this app; in a browser a plain string is enough\n"
        f'fal.config({{ proxyUrl: {{ url: "{base}/api/fal/proxy", when: "always" }} }});\n'
        f"{key}\n"
        f'const {{ data, requestId }} = await fal.subscribe("{APP}", {{\n'
        f"  input: {json.dumps(body, indent=2)},\n"
        "  logs: true,\n"
        "  onQueueUpdate: (update) => console.log(update.status),\n"
        "});\n"
        "console.log(requestId, data.image.url, data.seed);\n"
    )


def snippets(body: dict, base: str, queue: str | None, keyed: bool) -> tuple[str, str, str]:
    """(curl, Python, JavaScript) for the request `body` against the server at `base`."""
    base = base.rstrip("/")
    return curl(body, base, keyed), python(body, base, queue, keyed), javascript(body, base, keyed)
