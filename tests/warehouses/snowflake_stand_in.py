"""Snowflake stand-in for the connector tests: fakesnow's server mode (a DuckDB-backed
implementation of Snowflake's connector protocol), with what fakesnow leaves out and the
tests need:

- logins are checked: a password, or a key-pair JWT verified against the user's registered
  public keys (RSA_PUBLIC_KEY and RSA_PUBLIC_KEY_2), with Snowflake's error codes;
- `ALTER USER <name> SET|UNSET RSA_PUBLIC_KEY[_2]` registers and removes those keys;
- results larger than --chunk-rows are split as Snowflake splits them: the first rows inline,
  the rest as gzip'd Arrow IPC chunks fetched with the headers the response names.

Usage: snowflake_stand_in.py --port PORT --user NAME --password SECRET [--chunk-rows N]
With --port 0 the system picks a free port; the port listened on is printed first.
"""

import argparse
import base64
import gzip
import importlib
import hashlib
import json
import logging
import re
import secrets
import socket

import pyarrow as pa
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# `fakesnow.server` is also a function in the package's namespace: import the module by name.
fakesnow_server = importlib.import_module("fakesnow.server")

USERS: dict[str, dict] = {}
CHUNKS: dict[str, bytes] = {}
CHUNK_KEY = secrets.token_hex(16)
CHUNK_ROWS = 10_000


def refuse(code: str, message: str) -> JSONResponse:
    return JSONResponse({"data": {"errorCode": code}, "code": code, "message": message, "success": False})


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(pem: str) -> str:
    key = serialization.load_pem_public_key(pem.encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def jwt_valid(token: str, user: dict, login: str) -> bool:
    try:
        header, payload, signature = token.split(".")
        claims = json.loads(b64url(payload))
    except ValueError:
        return False
    if json.loads(b64url(header)).get("alg") != "RS256":
        return False
    if not claims.get("sub", "").endswith("." + login):
        return False
    for pem in user["keys"].values():
        if not claims.get("iss", "").endswith("." + login + "." + fingerprint(pem)):
            continue
        key = serialization.load_pem_public_key(pem.encode())
        try:
            key.verify(b64url(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
            return True
        except Exception:
            return False
    return False


async def login_request(request: Request) -> Response:
    body = await request.body()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    data = json.loads(body)["data"]
    login = data.get("LOGIN_NAME", "").upper()
    user = USERS.get(login)
    if data.get("AUTHENTICATOR") == "SNOWFLAKE_JWT":
        if not user or not jwt_valid(data.get("TOKEN", ""), user, login):
            return refuse("390144", "JWT token is invalid.")
    elif not user or data.get("PASSWORD") != user["password"]:
        return refuse("390100", "Incorrect username or password was specified.")
    return await fakesnow_server.login_request(request)


ALTER_USER = re.compile(
    r"^\s*ALTER\s+USER\s+\"?(\w+)\"?\s+(SET|UNSET)\s+(RSA_PUBLIC_KEY(?:_2)?)\s*(?:=\s*'([^']*)')?\s*;?\s*$",
    re.IGNORECASE,
)


def split_result(payload: dict) -> dict:
    data = payload.get("data") or {}
    rowset = data.get("rowsetBase64")
    if not rowset:
        return payload
    table = pa.ipc.open_stream(base64.b64decode(rowset)).read_all()
    if table.num_rows <= CHUNK_ROWS:
        return payload

    def ipc(part: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(part)
        return sink.getvalue().to_pybytes()

    data["rowsetBase64"] = base64.b64encode(ipc(table.slice(0, CHUNK_ROWS))).decode()
    data["chunks"] = []
    for start in range(CHUNK_ROWS, table.num_rows, CHUNK_ROWS):
        part = table.slice(start, CHUNK_ROWS)
        name = secrets.token_hex(8)
        CHUNKS[name] = gzip.compress(ipc(part))
        data["chunks"].append({"url": f"{BASE_URL}/chunks/{name}", "rowCount": part.num_rows, "uncompressedSize": 0})
    data["chunkHeaders"] = {"x-amz-server-side-encryption-customer-key": CHUNK_KEY}
    return payload


async def query_request(request: Request) -> Response:
    body = await request.body()
    text = gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body
    if match := ALTER_USER.match(json.loads(text)["sqlText"]):
        name, action, slot, value = match.groups()
        user = USERS.setdefault(name.upper(), {"password": None, "keys": {}})
        if action.upper() == "SET":
            key = "".join(value.split())
            user["keys"][slot.upper()] = f"-----BEGIN PUBLIC KEY-----\n{key}\n-----END PUBLIC KEY-----\n"
        else:
            user["keys"].pop(slot.upper(), None)
        return JSONResponse({"data": {"rowtype": [], "rowset": [], "queryResultFormat": "json"}, "success": True})
    response = await fakesnow_server.query_request(request)
    return Response(json.dumps(split_result(json.loads(response.body))), media_type="application/json")


async def chunk(request: Request) -> Response:
    if request.headers.get("x-amz-server-side-encryption-customer-key") != CHUNK_KEY:
        return Response(status_code=403)
    body = CHUNKS.get(request.path_params["name"])
    if body is None:
        return Response(status_code=404)
    return Response(body, media_type="application/octet-stream", headers={"Content-Encoding": "gzip"})


def main() -> None:
    global BASE_URL, CHUNK_ROWS
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    args = parser.parse_args()
    CHUNK_ROWS = args.chunk_rows
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(port, flush=True)
    BASE_URL = f"http://127.0.0.1:{port}"
    USERS[args.user.upper()] = {"password": args.password, "keys": {}}
    fakesnow_server.logger.setLevel(logging.WARNING)
    app = fakesnow_server.app
    app.router.routes[:0] = [
        Route("/session/v1/login-request", login_request, methods=["POST"]),
        Route("/queries/v1/query-request", query_request, methods=["POST"]),
        Route("/chunks/{name}", chunk, methods=["GET"]),
    ]
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
