"""What the BigQuery and Databricks SQL stand-ins share: a DuckDB database that runs each
warehouse's SQL after sqlglot has translated it, the errors it raises sorted the way the
warehouses sort theirs, and serving a Starlette app on a port the system picks (printed first,
so parallel tests never share one)."""

import socket
import threading
import warnings

import duckdb
import pyarrow as pa
import sqlglot
import uvicorn

# DuckDB warns that Arrow from a cursor copies the rows; the stand-in answers are small.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")


class SqlError(Exception):
    """A statement the warehouse refused; `kind` is missing_table, missing_column or invalid."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Engine:
    """One in-memory DuckDB database, reached by statements in `dialect`."""

    def __init__(self, dialect: str):
        self.dialect = dialect
        self.db = duckdb.connect()
        self.db.execute("SET TimeZone = 'UTC'")
        self.lock = threading.Lock()

    def run(self, sql: str, schema: str | None = None) -> pa.Table | None:
        """Runs one statement with `schema` as the default; its rows, or None for DDL."""
        try:
            statements = sqlglot.transpile(sql, read=self.dialect, write="duckdb")
        except sqlglot.errors.ParseError as e:
            raise SqlError("invalid", f"Syntax error: {e}") from e
        with self.lock:
            cursor = self.db.cursor()
            cursor.execute("SET TimeZone = 'UTC'")
            try:
                if schema:
                    cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    cursor.execute(f'USE "{schema}"')
                for statement in statements:
                    cursor.execute(statement)
                return cursor.to_arrow_table() if cursor.description else None
            except duckdb.CatalogException as e:
                raise SqlError("missing_table", str(e)) from e
            except duckdb.BinderException as e:
                kind = "missing_column" if "not found" in str(e) else "invalid"
                raise SqlError(kind, str(e)) from e
            except duckdb.Error as e:
                raise SqlError("invalid", str(e)) from e
            finally:
                cursor.close()


def ipc(table: pa.Table) -> bytes:
    """A table as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def bind(port: int) -> tuple[socket.socket, int]:
    """A listening socket on 127.0.0.1; the port is printed for the test to read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    return sock, port


def serve(app, sock: socket.socket) -> None:
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
