"""Databricks SQL stand-in for the connector tests. No Databricks runs here, so this serves
the SQL Statement Execution API's documented formats over a DuckDB database (statements
translated from Spark SQL by sqlglot):

- `POST /api/2.0/sql/statements` with a personal access token; `GET .../statements/{id}`
  polls a statement; states PENDING (the warehouse is starting: --warmup-seconds after the
  first statement), RUNNING, SUCCEEDED, FAILED with Databricks' error classes and SQLSTATEs;
- results with the EXTERNAL_LINKS disposition in ARROW_STREAM format: the manifest's schema
  (type_name per column), chunks of --chunk-rows rows each behind a pre-signed link that
  refuses requests carrying an Authorization header (as cloud storage does), the next chunk
  named by `next_chunk_internal_link` and served by `.../result/chunks/{n}`;
- a wrong token gets 403 "Invalid access token."

Usage: databricks_stand_in.py --port PORT --token T --warehouse-id W [--chunk-rows N]
       [--warmup-seconds S]
Prints the port listened on first.
"""

import argparse
import secrets
import time

import pyarrow as pa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from duck import Engine, SqlError, bind, ipc, serve

ENGINE = Engine("databricks")
STATEMENTS: dict[str, dict] = {}
LINKS: dict[str, bytes] = {}
SETTINGS = {"token": "", "warehouse": "", "chunk_rows": 10_000, "warmup": 0.0, "started_at": None}
BASE_URL = ""


def signed_in(request: Request) -> JSONResponse | None:
    if request.headers.get("Authorization") != f"Bearer {SETTINGS['token']}":
        return JSONResponse({"error_code": "403", "message": "Invalid access token."}, status_code=403)
    return None


def type_name(t: pa.DataType) -> dict:
    if pa.types.is_int64(t):
        return {"type_name": "LONG", "type_text": "BIGINT"}
    if pa.types.is_integer(t):
        return {"type_name": "INT", "type_text": "INT"}
    if pa.types.is_floating(t):
        return {"type_name": "DOUBLE", "type_text": "DOUBLE"}
    if pa.types.is_decimal(t):
        return {"type_name": "DECIMAL", "type_text": f"DECIMAL({t.precision},{t.scale})",
                "type_precision": t.precision, "type_scale": t.scale}
    if pa.types.is_boolean(t):
        return {"type_name": "BOOLEAN", "type_text": "BOOLEAN"}
    if pa.types.is_date(t):
        return {"type_name": "DATE", "type_text": "DATE"}
    if pa.types.is_timestamp(t):
        return {"type_name": "TIMESTAMP", "type_text": "TIMESTAMP"} if t.tz else {"type_name": "TIMESTAMP_NTZ", "type_text": "TIMESTAMP_NTZ"}
    return {"type_name": "STRING", "type_text": "STRING"}


def arrow_for_databricks(table: pa.Table) -> pa.Table:
    """Timestamps as Databricks sends them: microseconds, UTC."""
    columns = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us", tz="Etc/UTC" if column.type.tz else None))
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def link(statement: dict, index: int) -> dict:
    chunk = statement["chunks"][index]
    name = secrets.token_hex(12)
    LINKS[name] = chunk["ipc"]
    entry = {"chunk_index": index, "row_offset": chunk["offset"], "row_count": chunk["rows"],
             "byte_count": len(chunk["ipc"]), "external_link": f"{BASE_URL}/storage/{name}",
             "expiration": "2099-01-01T00:00:00Z"}
    if index + 1 < len(statement["chunks"]):
        entry["next_chunk_index"] = index + 1
        entry["next_chunk_internal_link"] = f"/api/2.0/sql/statements/{statement['id']}/result/chunks/{index + 1}"
    return entry


def execute(statement: dict) -> None:
    try:
        table = ENGINE.run(statement["sql"], statement["schema"])
    except SqlError as e:
        if e.kind == "missing_table":
            message, state = f"[TABLE_OR_VIEW_NOT_FOUND] The table or view cannot be found. {e.message} SQLSTATE: 42P01", "42P01"
        elif e.kind == "missing_column":
            message, state = f"[UNRESOLVED_COLUMN.WITHOUT_SUGGESTION] {e.message} SQLSTATE: 42703", "42703"
        else:
            message, state = f"[PARSE_SYNTAX_ERROR] {e.message} SQLSTATE: 42601", "42601"
        statement["status"] = {"state": "FAILED", "error": {"error_code": "BAD_REQUEST", "message": message}, "sql_state": state}
        return
    table = arrow_for_databricks(table if table is not None else pa.table({"num_affected_rows": pa.array([0], pa.int64())}))
    size = SETTINGS["chunk_rows"]
    chunks = []
    for offset in range(0, max(table.num_rows, 1), size):
        part = table.slice(offset, size)
        if part.num_rows or not chunks:
            chunks.append({"offset": offset, "rows": part.num_rows, "ipc": ipc(part)})
    statement["chunks"] = chunks if table.num_rows else []
    statement["schema_json"] = {"column_count": table.num_columns, "columns": [
        {"name": f.name, "position": i, **type_name(f.type)} for i, f in enumerate(table.schema)]}
    statement["rows"] = table.num_rows
    statement["status"] = {"state": "SUCCEEDED"}


def answer(statement: dict) -> JSONResponse:
    if statement["status"]["state"] == "PENDING" and time.monotonic() >= SETTINGS["started_at"]:
        execute(statement)
    body = {"statement_id": statement["id"], "status": statement["status"]}
    if statement["status"]["state"] == "SUCCEEDED":
        body["manifest"] = {
            "format": "ARROW_STREAM", "schema": statement["schema_json"],
            "total_chunk_count": len(statement["chunks"]), "total_row_count": statement["rows"],
            "chunks": [{"chunk_index": i, "row_offset": c["offset"], "row_count": c["rows"]} for i, c in enumerate(statement["chunks"])],
            "truncated": False,
        }
        body["result"] = {"external_links": [link(statement, 0)]} if statement["chunks"] else {}
    return JSONResponse(body)


async def submit(request: Request) -> Response:
    if refused := signed_in(request):
        return refused
    body = await request.json()
    if body.get("warehouse_id") != SETTINGS["warehouse"]:
        return JSONResponse({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Warehouse {body.get('warehouse_id')} does not exist."}, status_code=404)
    if body.get("disposition") != "EXTERNAL_LINKS" or body.get("format") != "ARROW_STREAM":
        return JSONResponse({"error_code": "INVALID_PARAMETER_VALUE", "message": "only EXTERNAL_LINKS with ARROW_STREAM is served here"}, status_code=400)
    if SETTINGS["started_at"] is None:
        SETTINGS["started_at"] = time.monotonic() + SETTINGS["warmup"]
    statement = {"id": secrets.token_hex(16), "sql": body["statement"], "schema": body.get("schema"),
                 "status": {"state": "PENDING"}}
    STATEMENTS[statement["id"]] = statement
    return answer(statement)


async def status(request: Request) -> Response:
    if refused := signed_in(request):
        return refused
    statement = STATEMENTS.get(request.path_params["id"])
    if statement is None:
        return JSONResponse({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such statement"}, status_code=404)
    return answer(statement)


async def cancel(request: Request) -> Response:
    if refused := signed_in(request):
        return refused
    statement = STATEMENTS.get(request.path_params["id"])
    if statement is not None and statement["status"]["state"] in ("PENDING", "RUNNING"):
        statement["status"] = {"state": "CANCELED"}
    return JSONResponse({})


async def chunk(request: Request) -> Response:
    if refused := signed_in(request):
        return refused
    statement = STATEMENTS.get(request.path_params["id"])
    index = int(request.path_params["index"])
    if statement is None or statement["status"]["state"] != "SUCCEEDED" or index >= len(statement["chunks"]):
        return JSONResponse({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such chunk"}, status_code=404)
    return JSONResponse({"external_links": [link(statement, index)]})


async def storage(request: Request) -> Response:
    if "Authorization" in request.headers:
        return Response("Only one auth mechanism allowed", status_code=400)
    body = LINKS.get(request.path_params["name"])
    if body is None:
        return Response(status_code=404)
    return Response(body, media_type="application/vnd.apache.arrow.stream")


def main() -> None:
    global BASE_URL
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--warehouse-id", required=True)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--warmup-seconds", type=float, default=0.0)
    args = parser.parse_args()
    SETTINGS.update(token=args.token, warehouse=args.warehouse_id, chunk_rows=args.chunk_rows, warmup=args.warmup_seconds)
    sock, port = bind(args.port)
    BASE_URL = f"http://127.0.0.1:{port}"
    print(port, flush=True)
    app = Starlette(routes=[
        Route("/api/2.0/sql/statements", submit, methods=["POST"]),
        Route("/api/2.0/sql/statements/{id}", status, methods=["GET"]),
        Route("/api/2.0/sql/statements/{id}/cancel", cancel, methods=["POST"]),
        Route("/api/2.0/sql/statements/{id}/result/chunks/{index:int}", chunk, methods=["GET"]),
        Route("/storage/{name}", storage, methods=["GET"]),
    ])
    serve(app, sock)


if __name__ == "__main__":
    main()
