#!/usr/bin/env python3
"""A stand-in for the LLM provider APIs the agent CLIs call, speaking their documented shapes:
Anthropic's Messages API (POST /v1/messages, streamed as message_start ... message_stop
server-sent events, or one JSON message) and OpenAI's Responses API (POST /v1/responses,
streamed response.* events) and Chat Completions (POST /v1/chat/completions).

Every reply is REPLY (argv[2]). Requests are appended as JSON lines to LOG (argv[3]) with the
path and whether their key matched $STANDIN_KEY (taken from the environment, so it is on no
command line), never the key itself.
Usage: STANDIN_KEY=... llm.py PORT REPLY LOG. Listens on 127.0.0.1 only; prints "ready".
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, REPLY, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
KEY = os.environ["STANDIN_KEY"]


def log(entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def authed(self):
        got = self.headers.get("x-api-key") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            got = got or auth[7:]
        return got == KEY

    def send(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def sse(self, events):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for name, data in events:
            chunk = ""
            if name:
                chunk += "event: %s\n" % name
            chunk += "data: %s\n\n" % (data if isinstance(data, str) else json.dumps(data))
            b = chunk.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self):
        log({"method": "GET", "path": self.path, "authed": self.authed()})
        if self.path.startswith("/v1/models"):
            return self.send(200, {"object": "list", "data": [{"id": "stand-in", "object": "model"}]})
        self.send(404, {"error": {"type": "not_found_error", "message": "not here"}})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        req = self.body()
        path = self.path.split("?")[0]
        prompt = json.dumps(req.get("messages") or req.get("input") or "")[-400:]
        log({"method": "POST", "path": path, "authed": self.authed(), "stream": bool(req.get("stream")), "model": req.get("model"), "tail": prompt})
        if not self.authed():
            if path.startswith("/v1/messages"):
                return self.send(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return self.send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        if path.startswith("/v1/messages/count_tokens"):
            return self.send(200, {"input_tokens": 10})
        if path.startswith("/v1/messages"):
            return self.messages(req)
        if path.startswith("/v1/responses"):
            return self.openai_responses(req)
        if path.startswith("/v1/chat/completions"):
            return self.chat(req)
        self.send(404, {"error": {"type": "not_found_error", "message": "not here"}})

    def messages(self, req):
        model = req.get("model", "stand-in")
        mid = "msg_%d" % int(time.time() * 1000)
        usage = {"input_tokens": 10, "output_tokens": 5}
        if not req.get("stream"):
            return self.send(200, {"id": mid, "type": "message", "role": "assistant", "model": model,
                                   "content": [{"type": "text", "text": REPLY}],
                                   "stop_reason": "end_turn", "stop_sequence": None, "usage": usage})
        self.sse([
            ("message_start", {"type": "message_start", "message": {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"}),
        ])

    def openai_responses(self, req):
        rid = "resp_%d" % int(time.time() * 1000)
        model = req.get("model", "stand-in")
        item = {"id": "msg_" + rid, "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}
        resp = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed", "model": model,
                "output": [item], "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                                            "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}}
        if not req.get("stream"):
            return self.send(200, resp)
        started = dict(resp, status="in_progress", output=[])
        self.sse([
            ("response.created", {"type": "response.created", "response": started}),
            ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": dict(item, status="in_progress", content=[])}),
            ("response.content_part.added", {"type": "response.content_part.added", "item_id": item["id"], "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            ("response.output_text.delta", {"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0, "delta": REPLY}),
            ("response.output_text.done", {"type": "response.output_text.done", "item_id": item["id"], "output_index": 0, "content_index": 0, "text": REPLY}),
            ("response.content_part.done", {"type": "response.content_part.done", "item_id": item["id"], "output_index": 0, "content_index": 0, "part": item["content"][0]}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": resp}),
        ])

    def chat(self, req):
        cid = "chatcmpl-%d" % int(time.time() * 1000)
        model = req.get("model", "stand-in")
        if not req.get("stream"):
            return self.send(200, {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        self.sse([
            (None, dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": REPLY}, "finish_reason": None}])),
            (None, dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])),
            (None, "[DONE]"),
        ])


srv = ThreadingHTTPServer(("127.0.0.1", PORT), H)
print("ready", flush=True)
srv.serve_forever()
