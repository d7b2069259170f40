"""fal's webhooks: when a request queued with `?fal_webhook=<url>` ends, POST its result there.

The payload is fal's: {request_id, gateway_request_id, status: OK | ERROR, payload, error}.
The URL passes the same public-address rules as inputs, at submit and at every attempt, and
the POST goes to the address that was checked. Failed deliveries are retried with backoff
(SVD_WEBHOOK_ATTEMPTS, SVD_WEBHOOK_BACKOFF).
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from svd.errors import InputError
from svd.fetch import check_public, is_http, pinned
from svd.outputs import served
from svd.settings import settings

log = logging.getLogger(__name__)
FIELD = "fal_webhook"
TIMEOUT = 15.0  # seconds for one delivery, as fal allows
MAX_DELAY = 900.0


def check(url: str) -> str:
    """The webhook URL, refused (InputError naming fal_webhook) unless public http(s)."""
    url = url.strip()
    if not is_http(url):
        raise InputError(FIELD, "must be an http(s) URL")
    check_public(url, FIELD)
    return url


def payload(job) -> dict:
    """fal's webhook body for a finished request."""
    body = {"request_id": job.id, "gateway_request_id": job.id}
    if job.error is None:
        return {**body, "status": "OK", "payload": served(job.output, job.webhook["files"]),
                "error": None}  # fmt: skip
    detail = {"detail": job.error.detail}
    if job.error.error_type:
        detail["error_type"] = job.error.error_type
    error = f"Invalid status code: {job.error.status}"
    return {**body, "status": "ERROR", "payload": detail, "error": error}


def send(job) -> None:
    """Deliver `job`'s result to its webhook in the background."""
    body, url = payload(job), job.webhook["url"]
    threading.Thread(target=deliver, args=(url, body), daemon=True, name="svd-webhook").start()


def deliver(url: str, body: dict) -> bool:
    """POST `body` to `url` until a 2xx answer or the attempts run out; True if delivered."""
    attempts, delay = settings().webhook_attempts, settings().webhook_backoff
    for attempt in range(1, attempts + 1):
        try:
            address = check_public(url, FIELD)  # again: DNS may answer otherwise now
            target, headers, extensions = pinned(url, address)
            with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
                request = client.build_request(
                    "POST", target, json=body, headers=headers, extensions=extensions
                )
                if client.send(request).is_success:
                    return True
        except (httpx.HTTPError, InputError) as e:
            log.warning("webhook for %s, attempt %d: %s", body["request_id"], attempt, e)
        if attempt < attempts:
            time.sleep(min(delay * 2 ** (attempt - 1), MAX_DELAY))
    log.warning("webhook for %s not delivered after %d attempts", body["request_id"], attempts)
    return False
