"""BigQuery stand-in for the connector tests. No BigQuery emulator runs here, so this serves
the REST API's documented formats over a DuckDB database (statements translated from GoogleSQL
by sqlglot):

- `POST /token`: a service account's RS256 JWT (iss, scope, aud, iat, exp) exchanged for an
  access token, as Google's OAuth endpoint does; a key that is not registered is refused with
  `invalid_grant`;
- `POST /bigquery/v2/projects/{p}/queries` (jobs.query) and `GET .../queries/{job}`
  (jobs.getQueryResults): rows as `{"f": [{"v": "..."}]}`, TIMESTAMPs as int64 microseconds
  when `formatOptions.useInt64Timestamp` is set, answers paged with `pageToken`; with
  --incomplete-first every job first answers `jobComplete: false`, as long jobs do;
- errors in Google's shape: 401 UNAUTHENTICATED, 404 notFound, 400 invalidQuery.

Usage: bigquery_stand_in.py --port PORT --project P --key-file F --unregistered-key-file G
       [--page-rows N] [--incomplete-first]
Writes a service account JSON key to F (registered) and one to G (not registered); prints
the port listened on first.
"""

import argparse
import base64
import json
import secrets
import time
import urllib.parse

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from duck import Engine, SqlError, bind, serve

ENGINE = Engine("bigquery")
KEYS: dict[str, rsa.RSAPublicKey] = {}
TOKENS: set[str] = set()
JOBS: dict[str, dict] = {}
PAGE_ROWS = 5000
INCOMPLETE_FIRST = False
PROJECT = ""
SCOPE = "https://www.googleapis.com/auth/bigquery"


def error(status: int, reason: str, message: str, code: str) -> JSONResponse:
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}], "status": code}}
    return JSONResponse(body, status_code=status)


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def service_account(path: str, port: int, register: bool) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"sluice-{secrets.token_hex(4)}@{PROJECT}.iam.gserviceaccount.com"
    if register:
        KEYS[email] = key.public_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with open(path, "w") as f:
        json.dump({
            "type": "service_account", "project_id": PROJECT, "private_key_id": secrets.token_hex(20),
            "private_key": pem.decode(), "client_email": email,
            "token_uri": f"http://127.0.0.1:{port}/token",
        }, f)


async def token(request: Request) -> JSONResponse:
    form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
    refuse = JSONResponse({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status_code=400)
    if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    try:
        header, payload, signature = str(form.get("assertion", "")).split(".")
        claims = json.loads(b64url(payload))
    except ValueError:
        return refuse
    key = KEYS.get(claims.get("iss", ""))
    if key is None or json.loads(b64url(header)).get("alg") != "RS256":
        return refuse
    try:
        key.verify(b64url(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return refuse
    if claims.get("scope") != SCOPE or not str(claims.get("aud", "")).endswith("/token") or claims.get("exp", 0) < time.time():
        return JSONResponse({"error": "invalid_scope"}, status_code=400)
    access = secrets.token_urlsafe(24)
    TOKENS.add(access)
    return JSONResponse({"access_token": access, "expires_in": 3599, "token_type": "Bearer"})


def signed_in(request: Request) -> bool:
    auth = request.headers.get("Authorization", "")
    return auth.startswith("Bearer ") and auth[7:] in TOKENS


def field_type(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "FLOAT"
    if pa.types.is_decimal(t):
        return "NUMERIC"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP" if t.tz else "DATETIME"
    return "STRING"


def cells(column: pa.ChunkedArray, kind: str, int64_timestamps: bool) -> list:
    if kind == "TIMESTAMP":
        micros = pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64()).to_pylist()
        return [None if m is None else (str(m) if int64_timestamps else repr(m / 1e6)) for m in micros]
    values = column.to_pylist()
    if kind == "BOOLEAN":
        return [None if v is None else ("true" if v else "false") for v in values]
    if kind == "DATETIME":
        return [None if v is None else v.isoformat() for v in values]
    return [None if v is None else str(v) for v in values]


def page(job: dict, start: int, limit: int, int64_timestamps: bool) -> dict:
    table: pa.Table = job["table"]
    part = table.slice(start, limit)
    fields = [{"name": f.name, "type": field_type(f.type), "mode": "NULLABLE"} for f in table.schema]
    columns = [cells(part.column(i), f["type"], int64_timestamps) for i, f in enumerate(fields)]
    rows = [{"f": [{"v": col[r]} for col in columns]} for r in range(part.num_rows)]
    body = {
        "kind": "bigquery#queryResponse", "jobComplete": True, "schema": {"fields": fields},
        "jobReference": {"projectId": PROJECT, "jobId": job["id"], "location": "US"},
        "totalRows": str(table.num_rows), "rows": rows,
    }
    if start + limit < table.num_rows:
        body["pageToken"] = f"{job['id']}:{start + limit}"
    return body


async def query(request: Request) -> JSONResponse:
    if not signed_in(request):
        return error(401, "authError", "Request had invalid authentication credentials.", "UNAUTHENTICATED")
    body = await request.json()
    if body.get("useLegacySql", True):
        return error(400, "invalid", "Legacy SQL is not served here", "INVALID_ARGUMENT")
    dataset = (body.get("defaultDataset") or {}).get("datasetId")
    try:
        table = ENGINE.run(body["query"], dataset)
    except SqlError as e:
        if e.kind == "missing_table":
            return error(404, "notFound", f"Not found: Table {PROJECT}:{dataset}: {e.message}", "NOT_FOUND")
        if e.kind == "missing_column":
            return error(400, "invalidQuery", f"Unrecognized name: {e.message}", "INVALID_ARGUMENT")
        return error(400, "invalidQuery", e.message, "INVALID_ARGUMENT")
    job = {"id": "job_" + secrets.token_hex(8), "table": table if table is not None else pa.table({})}
    JOBS[job["id"]] = job
    int64_timestamps = bool((body.get("formatOptions") or {}).get("useInt64Timestamp"))
    if INCOMPLETE_FIRST:
        job["polled"] = False
        return JSONResponse({"kind": "bigquery#queryResponse", "jobComplete": False,
                             "jobReference": {"projectId": PROJECT, "jobId": job["id"], "location": "US"}})
    limit = min(int(body.get("maxResults") or PAGE_ROWS), PAGE_ROWS)
    return JSONResponse(page(job, 0, limit, int64_timestamps))


async def results(request: Request) -> JSONResponse:
    if not signed_in(request):
        return error(401, "authError", "Request had invalid authentication credentials.", "UNAUTHENTICATED")
    job = JOBS.get(request.path_params["job"])
    if job is None:
        return error(404, "notFound", f"Not found: Job {request.path_params['job']}", "NOT_FOUND")
    params = request.query_params
    if job.get("polled") is False:
        job["polled"] = True
        return JSONResponse({"kind": "bigquery#getQueryResultsResponse", "jobComplete": False,
                             "jobReference": {"projectId": PROJECT, "jobId": job["id"], "location": "US"}})
    start = int(params["pageToken"].split(":")[1]) if params.get("pageToken") else 0
    limit = min(int(params.get("maxResults") or PAGE_ROWS), PAGE_ROWS)
    int64_timestamps = params.get("formatOptions.useInt64Timestamp") == "true"
    return JSONResponse(page(job, start, limit, int64_timestamps))


def main() -> None:
    global PAGE_ROWS, INCOMPLETE_FIRST, PROJECT
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--unregistered-key-file", required=True)
    parser.add_argument("--page-rows", type=int, default=PAGE_ROWS)
    parser.add_argument("--incomplete-first", action="store_true")
    args = parser.parse_args()
    PAGE_ROWS, INCOMPLETE_FIRST, PROJECT = args.page_rows, args.incomplete_first, args.project
    sock, port = bind(args.port)
    service_account(args.key_file, port, register=True)
    service_account(args.unregistered_key_file, port, register=False)
    print(port, flush=True)
    app = Starlette(routes=[
        Route("/token", token, methods=["POST"]),
        Route("/bigquery/v2/projects/{project}/queries", query, methods=["POST"]),
        Route("/bigquery/v2/projects/{project}/queries/{job}", results, methods=["GET"]),
    ])
    serve(app, sock)


if __name__ == "__main__":
    main()
