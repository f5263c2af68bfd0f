#!/usr/bin/env python3
"""A stand-in for an MCP server (stdio transport) that crashes mid-call.

It answers initialize (and accepts notifications/initialized) as a real server would, and
tools/list with one tool, "echo"; on tools/call it exits with status 1 without answering,
as a server that dies while running a tool does. Other requests get -32601 (method not found).
Newline-delimited JSON-RPC on stdin/stdout; exits 0 on EOF. Usage: mcp_crash.py
"""
import json
import sys

VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
TOOLS = [{"name": "echo", "description": "Echoes back the input string",
          "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}},
                          "required": ["message"]}}]


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    try:
        req = json.loads(line)
    except ValueError:
        continue
    if not isinstance(req, dict) or "id" not in req:
        continue  # notifications (notifications/initialized, ...) need no answer
    method, rid = req.get("method"), req["id"]
    if method == "initialize":
        asked = (req.get("params") or {}).get("protocolVersion")
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": asked if asked in VERSIONS else VERSIONS[0],
            "capabilities": {"tools": {}}, "serverInfo": {"name": "mcp-crash", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        print("mcp_crash: dying on tools/call", file=sys.stderr, flush=True)
        sys.exit(1)
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})
