"""Is the Hugging Face Hub reachable? Answered in seconds, before a library spends ~30 s retrying.

``datasets.load_dataset`` retries a Hub it cannot reach for about half a minute, printing a warning
each time, before its error. A plain TCP connection to the Hub's host with a short timeout tells a
machine without network from a flaky one in a few seconds; where it cannot connect, the caller
fails at once, and a present but flaky network still gets the library's retries. ``HF_HUB_OFFLINE``
(or ``HF_DATASETS_OFFLINE``) skips the probe: the libraries then read their local cache only.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}


def offline_mode() -> bool:
    """Whether the user asked the Hugging Face libraries to work from their cache only."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def hub_address() -> tuple[str, int]:
    """Host and port of the Hub (``HF_ENDPOINT`` or huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` seconds (name lookup included).

    Behind a proxy a direct connection proves nothing, so the answer is yes: the library decides.
    """
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    return _connects(hub_address(), timeout)


@functools.lru_cache(maxsize=8)
def _connects(address: tuple[str, int], timeout: float) -> bool:
    """One TCP probe per address and process: a run checks before its model and again per split read."""
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    # In a thread: a name lookup without network can block longer than the socket timeout.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])
