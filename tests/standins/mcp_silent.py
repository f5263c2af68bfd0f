#!/usr/bin/env python3
"""A stand-in for an MCP server (stdio transport) that hangs: a tool stuck forever, a deadlock.

It answers initialize as a real server would, then never answers anything else (no error, no
exit) while it keeps reading stdin; it exits 0 on EOF. Newline-delimited JSON-RPC on
stdin/stdout. Usage: mcp_silent.py
"""
import json
import sys

VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

for line in sys.stdin:
    try:
        req = json.loads(line)
    except ValueError:
        continue
    if isinstance(req, dict) and req.get("method") == "initialize" and "id" in req:
        asked = (req.get("params") or {}).get("protocolVersion")
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {
            "protocolVersion": asked if asked in VERSIONS else VERSIONS[0],
            "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
            "serverInfo": {"name": "mcp-silent", "version": "0"}}}) + "\n")
        sys.stdout.flush()
