//! HTTP/1.1 on the wire: request heads (httparse), bodies (length or chunked, capped),
//! responses (sized or chunked-streamed). No routing and no domain here.

use std::io::{self, BufRead, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Largest request head we read.
pub const MAX_HEAD: usize = 32 << 10;
/// Largest JSON body a route accepts.
pub const MAX_JSON: u64 = 1 << 20;
const MAX_HEADERS: usize = 64;

/// Who is calling. A listener says where a request came from; the router resolves bearer
/// tokens into `Token` or `Island`, and an untokened TCP peer into `Trusted` (or refuses it).
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// The operator socket: the owner (the socket's file permissions are the credential).
    Socket,
    /// A TCP peer, not yet authenticated.
    Tcp(std::net::IpAddr),
    /// A TCP peer trusted without a token (loopback/tailnet, when --require-token is off).
    Trusted(std::net::IpAddr),
    /// Holds an operator token; `islands` non-empty scopes it to those islands.
    Token {
        id: String,
        role: crate::api::Role,
        islands: Vec<String>,
    },
    /// Arrived on island `name`'s own socket; not yet authenticated.
    IslandSocket(String),
    /// Holds island `name`'s token: reaches only that island's autonomy routes.
    Island(String),
}

impl Caller {
    /// The islands a scoped token reaches; None: every island.
    pub fn scope(&self) -> Option<&[String]> {
        match self {
            Caller::Token { islands, .. } if !islands.is_empty() => Some(islands),
            _ => None,
        }
    }

    /// The operator role this caller holds (None: an island or an unauthenticated peer).
    pub fn role(&self) -> Option<crate::api::Role> {
        match self {
            Caller::Socket | Caller::Trusted(_) => Some(crate::api::Role::Owner),
            Caller::Token { role, .. } => Some(*role),
            _ => None,
        }
    }

    /// Whether this caller may see island `name` at all.
    pub fn sees(&self, name: &str) -> bool {
        self.scope().is_none_or(|s| s.iter().any(|i| i == name))
    }
}

/// One parsed request. The body is read through `body()` from the connection.
pub struct Request<'a> {
    pub method: String,
    /// The path exactly as sent, still percent-encoded, without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub caller: Caller,
    body: Body<'a>,
    /// Set while the client waits for `100 Continue` before it sends the body: the interim
    /// response goes out on the first body read, so a request refused before its body is
    /// read (route, auth, a length over its cap) gets its final status at once instead.
    expect: Option<Box<dyn Write + Send>>,
}

impl<'a> Request<'a> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `?key=true|1|yes` (anything else, or absent, is false; a junk value is a 400).
    pub fn query_bool(&self, key: &str) -> Result<bool> {
        match self.query(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(_) => Err(Error::bad(format!(
                "query {key}={:?} must be true or false",
                self.query(key).unwrap_or_default()
            ))),
        }
    }

    /// The declared body length; None for chunked.
    pub fn content_length(&self) -> Option<u64> {
        match &self.body {
            Body::Sized(l) => Some(l.remaining),
            Body::Chunked(_) => None,
        }
    }

    /// Arrange for `100 Continue` to be written to `w` before the body is first read.
    pub fn expect_continue(&mut self, w: Box<dyn Write + Send>) {
        self.expect = Some(w);
    }

    /// Whether the client still waits for `100 Continue` (its body was never asked for).
    pub fn awaiting_continue(&self) -> bool {
        self.expect.is_some()
    }

    pub fn body(&mut self) -> &mut (dyn Read + Send) {
        if let Some(mut w) = self.expect.take() {
            // A failed write means the peer is gone; the body read that follows says so.
            let _ = w
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|_| w.flush());
        }
        match &mut self.body {
            Body::Sized(l) => l,
            Body::Chunked(c) => c,
        }
    }

    /// The whole body, refused past `cap` bytes.
    pub fn bytes(&mut self, cap: u64) -> Result<Vec<u8>> {
        if let Some(n) = self.content_length() {
            if n > cap {
                return Err(Error::TooLarge(format!(
                    "body of {n} bytes is over the {cap}-byte limit"
                )));
            }
        }
        let mut buf = Vec::new();
        self.body()
            .take(cap + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::bad(format!("cannot read the request body: {e}")))?;
        if buf.len() as u64 > cap {
            return Err(Error::TooLarge(format!(
                "body is over the {cap}-byte limit"
            )));
        }
        Ok(buf)
    }

    /// The body as JSON (an empty body reads as `{}` where `T` allows it).
    pub fn json<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.bytes(MAX_JSON)?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // A body is an object: serde would otherwise fill a struct from an array by position.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::bad("the JSON body must be an object"));
        }
        serde_json::from_slice(bytes).map_err(|e| Error::bad(format!("invalid JSON body: {e}")))
    }

    /// `json`, for bodies that carry secrets: a parse error names its kind and place, never
    /// the text (serde quotes a value of the wrong type, and that value may be a key).
    pub fn json_secret<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.bytes(MAX_JSON)?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::bad("the JSON body must be an object"));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => {
                    // Field names are safe to show; values are not.
                    let m = e.to_string();
                    if m.starts_with("unknown field") || m.starts_with("missing field") {
                        // "unknown field `x`, expected one of `a`, `b`": names only.
                        m.split(" at line ").next().unwrap_or("").to_string()
                    } else {
                        "a field has the wrong type or value".to_string()
                    }
                }
                serde_json::error::Category::Syntax => "not valid JSON".into(),
                serde_json::error::Category::Eof => "the body ended early".into(),
                serde_json::error::Category::Io => "the body could not be read".into(),
            };
            Error::bad(format!(
                "invalid JSON body: {what} (line {} column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// Read what is left of the body so the connection can carry the next request. False when
    /// too much is left to be worth it (the connection is closed instead).
    pub fn drain(&mut self) -> bool {
        if self.awaiting_continue() && self.content_length() != Some(0) {
            // The client holds its body back until told to send it: close instead.
            return false;
        }
        let mut sink = [0u8; 8192];
        let mut total = 0usize;
        loop {
            match self.body().read(&mut sink) {
                Ok(0) => return true,
                Ok(n) => {
                    total += n;
                    if total > 4 << 20 {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }
}

/// A source of request bytes: the connection's buffered reader.
pub trait Source: BufRead + Send {}
impl<T: BufRead + Send> Source for T {}

enum Body<'a> {
    Sized(Limited<'a>),
    Chunked(Chunked<&'a mut dyn Source>),
}

/// A reader over a connection that stops after `remaining` bytes.
pub struct Limited<'a> {
    r: &'a mut dyn Source,
    remaining: u64,
}

impl Read for Limited<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.r.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body ended early",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Chunked transfer decoding (RFC 9112 §7.1); trailers are read and dropped. Used for
/// request bodies here and for response bodies by the client.
pub struct Chunked<R: BufRead> {
    r: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    pub fn new(r: R) -> Self {
        Chunked {
            r,
            left: 0,
            done: false,
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        (&mut self.r).take(4096).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad chunk framing",
            ));
        }
        Ok(String::from_utf8_lossy(&line).trim().to_string())
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"));
            }
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                while !self.line()?.is_empty() {}
                self.done = true;
                return Ok(0);
            }
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.r.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body ended early",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.r.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad chunk terminator",
                ));
            }
        }
        Ok(n)
    }
}

/// Why a head could not be read.
pub enum HeadError {
    /// The peer closed (or went idle) between requests: not an error.
    Closed,
    /// Answer with this status and close.
    Bad(u16, String),
}

/// Read and parse one request head from `r`.
pub fn read_request<'a>(
    r: &'a mut dyn Source,
    caller: Caller,
) -> std::result::Result<Request<'a>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let before = head.len();
        match (&mut *r)
            .take((MAX_HEAD + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)
        {
            Ok(0) if head.is_empty() => return Err(HeadError::Closed),
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(_) if head.is_empty() => return Err(HeadError::Closed),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                return Err(HeadError::Bad(
                    408,
                    "the request head did not arrive in time".into(),
                ))
            }
            Err(e) => return Err(HeadError::Bad(400, format!("cannot read request: {e}"))),
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::Bad(431, "request head too large".into()));
        }
        // Tolerate stray blank lines before a request line (RFC 9112 §2.2).
        if before == 0 && (head == b"\r\n" || head == b"\n") {
            head.clear();
            continue;
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Bad(400, "incomplete request head".into()))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Bad(431, "too many headers".into()))
        }
        Err(e) => return Err(HeadError::Bad(400, format!("malformed request: {e}"))),
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let body = match framing(&headers).map_err(|m| HeadError::Bad(400, m))? {
        None => Body::Chunked(Chunked {
            r,
            left: 0,
            done: false,
        }),
        Some(len) => Body::Sized(Limited { r, remaining: len }),
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, parse_query(q)),
        None => (target, Vec::new()),
    };
    Ok(Request {
        method,
        path: path.to_string(),
        query,
        headers,
        caller,
        body,
        expect: None,
    })
}

/// How the body is framed (RFC 9112 §6.3): `Some(length)`, or `None` for chunked. A request
/// that carries both framings, a coding other than a final `chunked`, or Content-Length
/// values that disagree could be read two ways by two parsers (request smuggling): refused.
fn framing(headers: &[(String, String)]) -> std::result::Result<Option<u64>, String> {
    let all = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .collect()
    };
    let te = all("transfer-encoding");
    let cl = all("content-length");
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err("a request may carry Content-Length or Transfer-Encoding, not both".into());
        }
        if !te.last().is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
            || te
                .iter()
                .filter(|c| c.eq_ignore_ascii_case("chunked"))
                .count()
                != 1
        {
            return Err(format!(
                "Transfer-Encoding {:?} is not supported: send a body chunked or with Content-Length",
                te.join(", ")
            ));
        }
        return Ok(None);
    }
    let mut len = None;
    for v in cl {
        let n = v
            .parse::<u64>()
            .ok()
            .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("bad Content-Length {v:?}"))?;
        if len.is_some_and(|l| l != n) {
            return Err("Content-Length values disagree".into());
        }
        len = Some(n);
    }
    Ok(Some(len.unwrap_or(0)))
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// A streamed body: the closure writes into the (chunked) connection until done or the peer
/// goes away (a write error).
pub type StreamFn = Box<dyn FnOnce(&mut dyn Write, &Peer) -> io::Result<()> + Send>;

/// What a streaming handler may know of its connection.
pub struct Peer {
    /// The connection's fd, for noticing a hang-up while nothing is being written.
    pub fd: std::os::fd::RawFd,
}

/// Takes over the connection after a `101 Switching Protocols`: the socket and any bytes
/// already read past the request head.
pub type UpgradeFn = Box<dyn FnOnce(super::server::Conn, Vec<u8>) + Send>;

pub enum Payload {
    Empty,
    Bytes(Vec<u8>),
    /// Sent chunked.
    Stream(StreamFn),
    /// A websocket: the server writes the 101 and hands the socket over.
    Upgrade(UpgradeFn),
    /// The head of a 101 whose upgrade the server has taken out to run after writing it.
    Switching,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub payload: Payload,
}

impl Response {
    pub fn json<T: Serialize>(status: u16, v: &T) -> Response {
        let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            payload: Payload::Bytes(body),
        }
    }
    /// A whole body of `content_type`.
    pub fn body(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            payload: Payload::Bytes(body),
        }
    }
    pub fn no_content() -> Response {
        Response {
            status: 204,
            headers: Vec::new(),
            payload: Payload::Empty,
        }
    }
    pub fn stream(content_type: &str, f: StreamFn) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            payload: Payload::Stream(f),
        }
    }
    /// Accept a websocket handshake (RFC 6455 §4.2); `f` then owns the connection.
    pub fn websocket(req: &Request, f: UpgradeFn) -> Result<Response> {
        let has = |h: &str, token: &str| {
            req.header(h)
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if !has("upgrade", "websocket") || !has("connection", "upgrade") {
            return Err(Error::bad(
                "this route is a websocket: send Upgrade: websocket",
            ));
        }
        if req.header("sec-websocket-version").map(str::trim) != Some("13") {
            return Err(Error::bad("Sec-WebSocket-Version must be 13"));
        }
        let key = req
            .header("sec-websocket-key")
            .ok_or_else(|| Error::bad("Sec-WebSocket-Key is missing"))?;
        let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
        Ok(Response {
            status: 101,
            headers: vec![
                ("Upgrade".into(), "websocket".into()),
                ("Connection".into(), "Upgrade".into()),
                ("Sec-WebSocket-Accept".into(), accept),
            ],
            payload: Payload::Upgrade(f),
        })
    }

    /// Accept an upgrade to a raw byte stream named `proto` (`Upgrade: <proto>`,
    /// `Connection: Upgrade`); `f` then owns the connection.
    pub fn raw_upgrade(req: &Request, proto: &str, f: UpgradeFn) -> Result<Response> {
        let has = |h: &str, token: &str| {
            req.header(h)
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if !has("upgrade", proto) || !has("connection", "upgrade") {
            return Err(Error::bad(format!(
                "this route is a byte stream: send Connection: Upgrade and Upgrade: {proto} (dejima ssh-proxy does)"
            )));
        }
        Ok(Response {
            status: 101,
            headers: vec![
                ("Upgrade".into(), proto.into()),
                ("Connection".into(), "Upgrade".into()),
            ],
            payload: Payload::Upgrade(f),
        })
    }

    pub fn header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// Write a response. `keep_alive` decides the Connection header. Errors mean the peer is gone.
pub fn write_response(
    w: &mut dyn Write,
    resp: Response,
    keep_alive: bool,
    head_only: bool,
    peer: &Peer,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !matches!(resp.payload, Payload::Upgrade(_) | Payload::Switching) {
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
    }
    match resp.payload {
        Payload::Upgrade(_) | Payload::Switching => {
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
        }
        Payload::Empty => {
            if !matches!(resp.status, 204 | 304) {
                head.push_str("Content-Length: 0\r\n");
            }
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
        }
        Payload::Bytes(b) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            w.write_all(head.as_bytes())?;
            if !head_only {
                w.write_all(&b)?;
            }
        }
        Payload::Stream(f) => {
            head.push_str("Transfer-Encoding: chunked\r\nX-Content-Type-Options: nosniff\r\n\r\n");
            w.write_all(head.as_bytes())?;
            w.flush()?;
            let mut cw = ChunkedWriter { inner: w };
            f(&mut cw, peer)?;
            cw.inner.write_all(b"0\r\n\r\n")?;
        }
    }
    w.flush()
}

/// Each write is one chunk, flushed at once (these are live streams).
struct ChunkedWriter<'a> {
    inner: &'a mut dyn Write,
}

impl Write for ChunkedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One write per chunk, so a reader never sees a chunk's parts arrive apart.
        let mut frame = Vec::with_capacity(buf.len() + 16);
        frame.extend_from_slice(format!("{:x}\r\n", buf.len()).as_bytes());
        frame.extend_from_slice(buf);
        frame.extend_from_slice(b"\r\n");
        self.inner.write_all(&frame)?;
        self.inner.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn src(s: &'static str) -> BufReader<&'static [u8]> {
        BufReader::new(s.as_bytes())
    }

    #[test]
    fn parses_head_query_and_sized_body() {
        let mut s = src("POST /v1/x?follow=true&a=b%20c HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloNEXT");
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/x"));
        assert_eq!(r.query("a"), Some("b c"));
        assert!(r.query_bool("follow").unwrap());
        assert_eq!(r.bytes(100).unwrap(), b"hello");
    }

    #[test]
    fn decodes_chunked_bodies() {
        let mut s = src("PUT /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n");
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        assert_eq!(r.bytes(100).unwrap(), b"abcde");
    }

    #[test]
    fn caps_bodies() {
        let mut s = src("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789");
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        assert!(matches!(r.bytes(5), Err(Error::TooLarge(_))));
        let mut s = src(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
        );
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        assert!(matches!(r.bytes(5), Err(Error::TooLarge(_))));
    }

    #[test]
    fn refuses_bad_heads() {
        let mut s = src("GARBAGE\r\n\r\n");
        assert!(matches!(
            read_request(&mut s, Caller::Socket),
            Err(HeadError::Bad(400, _))
        ));
        let mut s = src("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert!(matches!(
            read_request(&mut s, Caller::Socket),
            Err(HeadError::Bad(400, _))
        ));
        let mut s = src("");
        assert!(matches!(
            read_request(&mut s, Caller::Socket),
            Err(HeadError::Closed)
        ));
    }

    #[test]
    fn refuses_ambiguous_framing() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        ] {
            let mut s = BufReader::new(head.as_bytes());
            assert!(
                matches!(
                    read_request(&mut s, Caller::Socket),
                    Err(HeadError::Bad(400, _))
                ),
                "{head:?}"
            );
        }
        let mut s = src("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc");
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        assert_eq!(r.bytes(10).unwrap(), b"abc");
    }

    #[test]
    fn continue_goes_out_on_the_first_body_read_only() {
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let mut s = src("PUT /f HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        r.expect_continue(Box::new(sink.clone()));
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "nothing before the body is wanted"
        );
        assert_eq!(r.bytes(10).unwrap(), b"hi");
        assert_eq!(&*sink.0.lock().unwrap(), b"HTTP/1.1 100 Continue\r\n\r\n");
        // Refused before the body was read: no 100, and the connection is not reused.
        let sink = Sink::default();
        let mut s = src("PUT /f HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        r.expect_continue(Box::new(sink.clone()));
        assert!(!r.drain());
        assert!(sink.0.lock().unwrap().is_empty());
    }

    #[test]
    fn bad_json_is_400() {
        let mut s = src("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n{nope");
        let mut r = read_request(&mut s, Caller::Socket).ok().unwrap();
        assert!(matches!(
            r.json::<serde_json::Value>(),
            Err(Error::BadRequest(_))
        ));
    }
}
