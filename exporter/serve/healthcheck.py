"""`python -m exporter.serve.healthcheck`: the container's HEALTHCHECK, with no curl in the image.

Asks the exporter on 127.0.0.1 (port from AZDO_LISTEN, default 9862) for /healthz, over HTTP and, if
that fails, over HTTPS without verifying the certificate (a web config with TLS). The process is
healthy when it answers 200, or 401 when a web config requires basic auth (it protects every path, and
the healthcheck has no password): either answer shows that the server serves. Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys


def _port() -> int:
    listen = os.environ.get("AZDO_LISTEN", "").strip()
    port = listen.rpartition(":")[2]
    return int(port) if port.isdigit() else 9862


def main() -> int:
    port = _port()
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    for conn in (http.client.HTTPConnection("127.0.0.1", port, timeout=4),
                 http.client.HTTPSConnection("127.0.0.1", port, timeout=4, context=insecure)):
        try:
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException):
            continue
        finally:
            conn.close()
        if status in (200, 401):
            return 0
        print(f"unhealthy: /healthz answered {status}", file=sys.stderr)
        return 1
    print(f"unhealthy: no answer on 127.0.0.1:{port}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
