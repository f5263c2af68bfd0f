#!/usr/bin/env python3
"""A stand-in for an MCP server (stdio transport) whose answer is too big to take whole: a tool
that returns a huge file or a runaway log.

It answers initialize and tools/list (one tool, "echo") as a real server would; on tools/call
it answers with a single well-formed JSON-RPC line of about 9 MiB (a text content of 9 MiB of
"x", so past an 8 MiB cap), then goes on serving. Other requests get -32601 (method not
found). Newline-delimited JSON-RPC on stdin/stdout; exits 0 on EOF, or quietly when the reader
closes stdout. Usage: mcp_noisy.py
"""
import json
import os
import sys

VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
TOOLS = [{"name": "echo", "description": "Echoes back the input string",
          "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}},
                          "required": ["message"]}}]
HUGE = "x" * (9 << 20)


def send(msg):
    data = memoryview((json.dumps(msg) + "\n").encode())
    try:
        while data:  # os.write, not sys.stdout: a short write then EPIPE must not pass unseen
            data = data[os.write(1, data):]
    except BrokenPipeError:
        os._exit(0)  # the reader went away: nothing more to say


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
            "capabilities": {"tools": {}}, "serverInfo": {"name": "mcp-noisy", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": HUGE}]}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})
