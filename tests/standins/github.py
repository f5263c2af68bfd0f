#!/usr/bin/env python3
"""A stand-in for GitHub: the REST API's repository routes and git's smart HTTP protocol.

REST (at / as api.github.com serves it, and at /api/v3/ as GitHub Enterprise does):
  GET  /user                 the token's user
  GET  /user/repos           the user's repositories, paginated (page, per_page) with a Link
                             header naming the next and last pages
  POST /user/repos           create {name, private, description?}: 201, or 422 when it exists
Anything with a token other than $STANDIN_TOKEN gets GitHub's 401 {"message": "Bad credentials"}.

Git (smart HTTP through `git http-backend`, repositories under ROOT):
  /git/<repo>.git/...        needs HTTP Basic auth whose password is $STANDIN_TOKEN; clone and
                             push both work. Each authenticated request is logged.

Usage: STANDIN_TOKEN=... github.py PORT ROOT LOG LOGIN [N_REPOS]. 127.0.0.1 only; prints "ready".
"""
import base64
import json
import os
import subprocess
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, ROOT, LOG, LOGIN = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
N = int(sys.argv[5]) if len(sys.argv) > 5 else 5
TOKEN = os.environ["STANDIN_TOKEN"]
REPOS = [{"name": "repo-%d" % i, "private": i % 2 == 0, "description": None} for i in range(1, N + 1)]


def log(entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


def repo_json(r, base):
    full = "%s/%s" % (LOGIN, r["name"])
    return {"id": abs(hash(full)) % 100000, "name": r["name"], "full_name": full, "private": r["private"],
            "description": r["description"], "clone_url": "%s/%s.git" % (base, full),
            "ssh_url": "git@stand-in:%s.git" % full, "html_url": "%s/%s" % (base, full),
            "default_branch": "main", "updated_at": "2026-11-25T00:00:00Z"}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj, headers=()):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(b)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b)

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def rest_path(self):
        path = urllib.parse.urlparse(self.path).path
        if path.startswith("/api/v3/"):
            return path[len("/api/v3"):], "/api/v3"
        return path, ""

    def bearer_ok(self):
        auth = self.headers.get("Authorization", "")
        for p in ("Bearer ", "token "):
            if auth.startswith(p):
                return auth[len(p):] == TOKEN
        return False

    def do_GET(self):
        if self.path.startswith("/git/"):
            return self.git()
        path, prefix = self.rest_path()
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        ok = self.bearer_ok()
        log({"method": "GET", "path": path, "ghe": prefix != "", "authed": ok, "query": {k: v[0] for k, v in q.items()}})
        if not ok:
            return self.send(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        base = "http://127.0.0.1:%d" % PORT
        if path == "/user":
            return self.send(200, {"login": LOGIN, "id": 4242})
        if path == "/user/repos":
            page, per = int(q.get("page", ["1"])[0]), int(q.get("per_page", ["30"])[0])
            items = REPOS[(page - 1) * per: page * per]
            last = max(1, (len(REPOS) + per - 1) // per)
            links = []
            mk = lambda p: '<%s%s/user/repos?page=%d&per_page=%d>' % (base, prefix, p, per)
            if page < last:
                links.append(mk(page + 1) + '; rel="next"')
                links.append(mk(last) + '; rel="last"')
            if page > 1:
                links.append(mk(page - 1) + '; rel="prev"')
            return self.send(200, [repo_json(r, base) for r in items], [("Link", ", ".join(links))] if links else [])
        self.send(404, {"message": "Not Found"})

    def do_POST(self):
        if self.path.startswith("/git/"):
            return self.git()
        path, prefix = self.rest_path()
        raw = self.body()
        ok = self.bearer_ok()
        log({"method": "POST", "path": path, "ghe": prefix != "", "authed": ok})
        if not ok:
            return self.send(401, {"message": "Bad credentials"})
        if path != "/user/repos":
            return self.send(404, {"message": "Not Found"})
        req = json.loads(raw or b"{}")
        if not isinstance(req.get("private"), bool) or not req.get("name"):
            return self.send(422, {"message": "Validation Failed"})
        if any(r["name"] == req["name"] for r in REPOS):
            return self.send(422, {"message": "Repository creation failed.", "errors": [{"message": "name already exists on this account"}]})
        r = {"name": req["name"], "private": req["private"], "description": req.get("description")}
        REPOS.insert(0, r)
        self.send(201, repo_json(r, "http://127.0.0.1:%d" % PORT))

    def git(self):
        auth = self.headers.get("Authorization", "")
        user = pw = None
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                pass
        if pw != TOKEN:
            log({"git": self.path.split("?")[0], "authed": False, "user": user})
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="stand-in"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        u = urllib.parse.urlparse(self.path)
        body = self.body() if self.command == "POST" else b""
        log({"git": u.path, "authed": True, "user": user})
        env = dict(os.environ, GIT_PROJECT_ROOT=ROOT, GIT_HTTP_EXPORT_ALL="1", REMOTE_USER=user or "x",
                   REQUEST_METHOD=self.command, PATH_INFO=u.path[len("/git"):], QUERY_STRING=u.query,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                   HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
                   GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.receivepack", GIT_CONFIG_VALUE_0="true")
        env.pop("STANDIN_TOKEN", None)
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        if not rest and b"\n\n" in out:
            head, _, rest = out.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)


srv = ThreadingHTTPServer(("127.0.0.1", PORT), H)
print("ready", flush=True)
srv.serve_forever()
