#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A current ClickHouse engine (chdb, in-process) behind a small HTTP
endpoint that speaks the part of ClickHouse's HTTP interface rulogd's
CLICKHOUSE output uses, for the tests: chdb opens no socket of its own.

  chdb_http.py PORT SESSION_DIR USER PASSWORD    (PYTHONPATH: the chdb wheel)

POST /?query=INSERT INTO t(cols) FORMAT RowBinary with the rows as body
becomes INSERT INTO t(cols) SETTINGS <the other URL parameters> SELECT *
FROM file(<body>, RowBinary, <the columns' types>), so settings such as
insert_deduplication_token reach the engine as a server would apply them.
Any other query (URL parameter or body) runs as is; FORMAT X at its end
picks the output format (TabSeparated otherwise).
"""

import http.server
import os
import re
import sys
import tempfile
import urllib.parse

from chdb import session

PORT, DIR, USER, PASSWORD = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
SESSION = session.Session(DIR)
INSERT = re.compile(r"^\s*INSERT INTO\s+(\S+?)\s*\((.*)\)\s*FORMAT\s+RowBinary\s*$", re.S | re.I)
FORMAT = re.compile(r"^(.*?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.S | re.I)
OWN = {"query", "database", "user", "password", "default_format"}
# A test's fault: after this query, the next insert is applied and then the
# connection is closed without an answer, as when a server dies right after
# a commit, so the client cannot know the rows went in.
BREAK = "SELECT 'lab: break the next insert answer'"
broken = [False]


def quote(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run(q, fmt="TabSeparated"):
    return SESSION.query(q, fmt).bytes()


def insert(table, cols, settings, body):
    names = [c.strip() for c in cols.split(",")]
    types = {}
    for line in run(f"DESCRIBE TABLE {table}").decode().splitlines():
        f = line.split("\t")
        types[f[0]] = f[1]
    structure = ", ".join(f"{n} {types[n.strip('`')]}" for n in names)
    with tempfile.NamedTemporaryFile(dir=DIR, suffix=".bin", delete=False) as f:
        f.write(body)
        path = f.name
    try:
        st = ", ".join(f"{k} = {quote(v) if not v.isdigit() else v}" for k, v in settings.items())
        run(
            f"INSERT INTO {table}({cols}) "
            + (f"SETTINGS {st} " if st else "")
            + f"SELECT * FROM file({quote(path)}, RowBinary, {quote(structure)})"
        )
    finally:
        os.unlink(path)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_POST(self):
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        user = self.headers.get("X-ClickHouse-User", "default")
        if (user, self.headers.get("X-ClickHouse-Key", "")) != (USER, PASSWORD):
            return self.answer(403, b"Code: 516. DB::Exception: Authentication failed\n")
        settings = {k: v for k, v in params.items() if k not in OWN}
        try:
            q = params.get("query")
            m = INSERT.match(q) if q else None
            if m:
                insert(m.group(1), m.group(2), settings, body)
                if broken[0]:
                    broken[0] = False
                    self.close_connection = True
                    return
                return self.answer(200, b"")
            q = q + "\n" + body.decode() if q else body.decode()
            if q.strip() == BREAK:
                broken[0] = True
            fm = FORMAT.match(q)
            out = run(fm.group(1), fm.group(2)) if fm else run(q)
            self.answer(200, out)
        except Exception as e:  # the engine's message, as a server sends it
            self.answer(500, f"Code: 1000. {e}\n".encode())

    do_GET = do_POST

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
