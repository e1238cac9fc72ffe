"""Local HTTP(S) servers that answer as the Kubernetes API server, Kong's Admin API and Microsoft
Entra do, for doctor's probes. Each imitates only what the probe reads, from the upstream source
or documentation named beside it; none was checked against the real service here.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# (status, JSON body) for a request's path, headers and TLS socket (None over plain HTTP)
Answer = Callable[[str, dict[str, str], Any], tuple[int, Any]]


@dataclass(frozen=True)
class Pki:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def data(self, path: Path) -> str:
        """A file as a kubeconfig `*-data` field holds it: base64 of the PEM."""
        return base64.b64encode(path.read_bytes()).decode()


def make_pki(directory: Path) -> Pki:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test-ca",
            "-days", "2")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN={name}/O=system:masters")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext)  # fmt: skip
    return Pki(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
    )


@contextmanager
def serve(answer: Answer, pki: Pki | None = None, client_certs: bool = False) -> Iterator[str]:
    """Serve `answer` on 127.0.0.1 (HTTPS with `pki`); yield the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            tls = self.connection if isinstance(self.connection, ssl.SSLSocket) else None
            status, body = answer(self.path, dict(self.headers.items()), tls)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if pki is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        if client_certs:
            context.load_verify_locations(pki.ca)
            context.verify_mode = ssl.CERT_OPTIONAL
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# Kubernetes: GET /version answers apimachinery's version.Info (pkg/version/types.go); a request
# whose credentials fail authentication gets 401 and a Status (apiserver
# pkg/endpoints/handlers/responsewriters/errors.go, "Unauthorized").
K8S_VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.2", "platform": "linux/amd64"}
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


# API discovery: GET /apis/GROUP/VERSION answers an APIResourceList of the resources served there
# (apimachinery pkg/apis/meta/v1/types.go; a CRD's resource and its status subresource), and a
# group version nobody serves gets 404 (the probe reads only the status).
NOT_FOUND = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server could not find the requested resource",
    "reason": "NotFound",
    "code": 404,
}


def resource_list(group_version: str, resources: Mapping[str, str]) -> dict[str, Any]:
    """What discovery lists for `group_version`: each resource name with its kind."""
    listed = []
    for name, kind in resources.items():
        listed += [
            {"name": name, "namespaced": True, "kind": kind, "verbs": ["get", "list", "create"]},
            {"name": f"{name}/status", "namespaced": True, "kind": kind, "verbs": ["get"]},
        ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": listed,
    }


def kube_apiserver(
    token: str | None = None,
    anonymous: bool = False,
    served: Mapping[str, Mapping[str, str]] | None = None,
) -> Answer:
    """Authenticates a bearer `token` or a client certificate from the test CA; anonymous
    requests pass only if `anonymous` (kube-apiserver --anonymous-auth). `served` maps a group
    version to its resources (name -> kind), as discovery lists them."""

    def answer(path: str, headers: dict[str, str], tls: Any) -> tuple[int, Any]:
        bearer = headers.get("Authorization", "")
        certified = tls is not None and tls.getpeercert()
        if bearer:
            ok = token is not None and bearer == f"Bearer {token}"
        else:
            ok = bool(certified) or anonymous
        if not ok:
            return 401, UNAUTHORIZED
        if path == "/version":
            return 200, K8S_VERSION
        group_version = path.removeprefix("/apis/")
        if path.startswith("/apis/") and group_version in (served or {}):
            return 200, resource_list(group_version, (served or {})[group_version])
        return 404, NOT_FOUND

    return answer


# Kong: GET / on the Admin API returns the node's information with "version" (Admin API
# reference, "Retrieve node information"); with RBAC on (Kong Gateway Enterprise) a request
# without a valid `Kong-Admin-Token` header gets 401 "Invalid credentials. Token or User
# credentials required".
def kong_admin(token: str | None) -> Answer:
    def answer(path: str, headers: dict[str, str], tls: Any) -> tuple[int, Any]:
        sent = {k.lower(): v for k, v in headers.items()}.get("kong-admin-token")
        if token is not None and sent != token:
            return 401, {"message": "Invalid credentials. Token or User credentials required"}
        return (
            (200, {"version": "3.9.1", "tagline": "Welcome to kong"}) if path == "/" else (404, {})
        )

    return answer


# Microsoft Entra: GET /{tenant}/v2.0/.well-known/openid-configuration answers the tenant's
# OpenID configuration; an unknown tenant gets 400 {"error": "invalid_tenant",
# "error_description": "AADSTS90002: Tenant '...' not found. ..."} (Entra error codes reference).
def entra(tenants: set[str]) -> Answer:
    def answer(path: str, headers: dict[str, str], tls: Any) -> tuple[int, Any]:
        tenant = path.strip("/").split("/")[0]
        if path.endswith("/v2.0/.well-known/openid-configuration") and tenant in tenants:
            return 200, {"issuer": f"https://login.microsoftonline.com/{tenant}/v2.0"}
        return 400, {
            "error": "invalid_tenant",
            "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
        }

    return answer
