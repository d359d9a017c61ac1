"""The avatar proxy: agents see customers' profile pictures without their browser ever calling a platform.

A platform's avatar URL is fetched by the server, never by the agent's browser, so the platform's image host
learns nothing of the agent (IP address, referrer, cookies) and the console's Content-Security-Policy can keep
`img-src 'self'`. What is fetched is guarded: public http(s) addresses only (`socialcrm.netguard`; redirects
checked hop by hop), a short timeout, at most `MAX_BYTES`, and only PNG, JPEG, GIF or WebP whose first bytes
agree with the declared type (never SVG, which can carry script). Results are cached in Redis for a day,
failures for ten minutes, so a page of 50 rows costs the platforms at most 50 fetches a day.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from urllib.parse import urljoin

import httpx
from django.conf import settings
from django.core.cache import cache

from socialcrm.netguard import UrlRefused, guarded_client, public_url_check

logger = logging.getLogger(__name__)

MAX_BYTES = 512 * 1024
MAX_REDIRECTS = 3
TIMEOUT = httpx.Timeout(3.0, connect=2.0)
HIT_SECONDS = 24 * 3600
MISS_SECONDS = 10 * 60
USER_AGENT = "socialcrm-avatars/1"
# Declared type -> how the file must start.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Avatar:
    content_type: str
    body: bytes


def _cache_key(url: str) -> str:
    return "console:avatar:" + hashlib.sha256(url.encode()).hexdigest()


def _looks_like(content_type: str, body: bytes) -> bool:
    starts = SIGNATURES.get(content_type)
    if not starts or not body.startswith(starts):
        return False
    return content_type != "image/webp" or body[8:12] == b"WEBP"


def _download(url: str) -> Avatar | None:
    """GET `url` under the guards above; None for anything unusable."""
    allow_private = settings.CONSOLE_AVATAR_ALLOW_PRIVATE
    headers = {"User-Agent": USER_AGENT, "Accept": ", ".join(SIGNATURES)}
    with guarded_client(allow_private=allow_private, timeout=TIMEOUT, follow_redirects=False,
                        headers=headers) as client:
        for _ in range(MAX_REDIRECTS + 1):
            public_url_check(url, allow_private=allow_private)
            with client.stream("GET", url) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    return None
                content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if content_type not in SIGNATURES:
                    return None
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > MAX_BYTES:
                    return None
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        return None
                return Avatar(content_type, bytes(body)) if _looks_like(content_type, bytes(body)) else None
    return None


def avatar_fetch(url: str) -> Avatar | None:
    """The image at `url` (cached), or None when there is none the console may show."""
    if not url:
        return None
    key = _cache_key(url)
    cached = cache.get(key)
    if cached is not None:
        return Avatar(*cached) if cached else None
    try:
        avatar = _download(url)
    except (UrlRefused, httpx.HTTPError, ValueError) as exc:
        logger.info("avatar %s not fetched: %s", url[:200], exc)
        avatar = None
    if avatar is None:
        cache.set(key, (), MISS_SECONDS)
    else:
        cache.set(key, (avatar.content_type, avatar.body), HIT_SECONDS)
    return avatar
