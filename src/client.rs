//! A small HTTP/1.1 client for the daemon's API over its Unix socket or TCP (`DEJIMA_HOST`).
//! Used by the CLI and the tests. One connection per request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::http::wire::Chunked;
use crate::store::Home;

/// Where the daemon is.
#[derive(Debug, Clone)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
}

#[derive(Debug, Clone)]
pub struct Client {
    pub target: Target,
    pub token: Option<String>,
    pub timeout: Option<Duration>,
}

/// A non-2xx answer or a transport failure.
#[derive(Debug)]
pub enum ClientError {
    /// The daemon could not be reached.
    Connect(String),
    /// The daemon answered with an error status; `message` is its `error` field.
    Status { status: u16, message: String },
    /// Anything else on the wire.
    Io(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(m) => write!(f, "cannot reach dejimad: {m}"),
            ClientError::Status { status, message } => write!(f, "{message} ({status})"),
            ClientError::Io(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e.to_string())
    }
}

/// The response: status, headers, and a body reader (sized, chunked, or to EOF).
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: BodyReader,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn bytes(mut self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.body.read_to_end(&mut v)?;
        Ok(v)
    }
    pub fn text(self) -> io::Result<String> {
        Ok(String::from_utf8_lossy(&self.bytes()?).into_owned())
    }
    pub fn json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        let b = self.bytes()?;
        serde_json::from_slice(&b)
            .map_err(|e| ClientError::Io(format!("bad JSON from dejimad: {e}")))
    }
    pub fn reader(&mut self) -> &mut dyn Read {
        &mut self.body
    }
    /// Turn an error status into `ClientError::Status`.
    pub fn ok(self) -> Result<Response, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let status = self.status;
        let body = self.bytes().unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(ClientError::Status { status, message })
    }
}

enum BodyReader {
    Sized(io::Take<BufReader<Box<dyn ReadWrite>>>),
    Chunked(Chunked<BufReader<Box<dyn ReadWrite>>>),
    Eof(BufReader<Box<dyn ReadWrite>>),
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BodyReader::Sized(r) => r.read(buf),
            BodyReader::Eof(r) => r.read(buf),
            BodyReader::Chunked(c) => c.read(buf),
        }
    }
}

pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// A request body.
pub enum Body<'a> {
    None,
    Bytes(&'a [u8], &'a str),
    /// A reader of known length.
    Reader(&'a mut dyn Read, u64),
}

impl Client {
    /// `DEJIMA_HOST` (host:port) when set, else the Unix socket under `DEJIMA_HOME`.
    pub fn from_env() -> Client {
        let target = match std::env::var("DEJIMA_HOST") {
            Ok(h) if !h.is_empty() && !h.starts_with("unix:") => Target::Tcp(
                h.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string(),
            ),
            Ok(h) if h.starts_with("unix:") => Target::Unix(PathBuf::from(&h[5..])),
            _ => Target::Unix(Home::from_env().socket()),
        };
        let token = std::env::var("DEJIMA_TOKEN").ok().filter(|t| !t.is_empty());
        Client {
            target,
            token,
            timeout: None,
        }
    }

    pub fn unix(path: impl Into<PathBuf>) -> Client {
        Client {
            target: Target::Unix(path.into()),
            token: None,
            timeout: None,
        }
    }

    fn connect(&self) -> Result<Box<dyn ReadWrite>, ClientError> {
        let s: Box<dyn ReadWrite> = match &self.target {
            Target::Unix(p) => {
                let s = UnixStream::connect(p)
                    .map_err(|e| ClientError::Connect(format!("{}: {e}", p.display())))?;
                s.set_read_timeout(self.timeout)?;
                Box::new(s)
            }
            Target::Tcp(a) => {
                let s =
                    TcpStream::connect(a).map_err(|e| ClientError::Connect(format!("{a}: {e}")))?;
                s.set_read_timeout(self.timeout)?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
        };
        Ok(s)
    }

    /// Send one request and read the response head; the body is left to read.
    pub fn send(&self, method: &str, path: &str, body: Body<'_>) -> Result<Response, ClientError> {
        let mut s = self.connect()?;
        let host = match &self.target {
            Target::Unix(_) => "dejimad".to_string(),
            Target::Tcp(a) => a.clone(),
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: dejima/{}\r\n", env!("CARGO_PKG_VERSION"));
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        match &body {
            Body::None => head.push_str("Content-Length: 0\r\n"),
            Body::Bytes(b, ct) => head.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                b.len()
            )),
            Body::Reader(_, n) => head.push_str(&format!(
                "Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n"
            )),
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        match body {
            Body::None => {}
            Body::Bytes(b, _) => s.write_all(b)?,
            Body::Reader(r, n) => {
                let copied = io::copy(&mut r.take(n), &mut s)?;
                if copied != n {
                    return Err(ClientError::Io(format!(
                        "body ended after {copied} of {n} bytes"
                    )));
                }
            }
        }
        s.flush()?;
        read_response(s, method == "HEAD")
    }

    /// Send and require 2xx.
    pub fn call(&self, method: &str, path: &str, body: Body<'_>) -> Result<Response, ClientError> {
        self.send(method, path, body)?.ok()
    }

    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call("GET", path, Body::None)?.json()
    }

    pub fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let b = serde_json::to_vec(body).map_err(|e| ClientError::Io(e.to_string()))?;
        self.call(method, path, Body::Bytes(&b, "application/json"))?
            .json()
    }
}

fn read_response(s: Box<dyn ReadWrite>, head_only: bool) -> Result<Response, ClientError> {
    let mut r = BufReader::new(s);
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(ClientError::Io(
                "dejimad closed the connection without answering".into(),
            ));
        }
        if head.ends_with(b"\r\n\r\n") || head.len() > 64 << 10 {
            break;
        }
    }
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    resp.parse(&head)
        .map_err(|e| ClientError::Io(format!("bad response from dejimad: {e}")))?;
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let body = if head_only || status == 204 || status == 304 {
        BodyReader::Sized(r.take(0))
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        BodyReader::Chunked(Chunked::new(r))
    } else if let Some(n) = find("content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        BodyReader::Sized(r.take(n))
    } else {
        BodyReader::Eof(r)
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Percent-encode one path segment.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Percent-encode a path, keeping its slashes.
pub fn path_enc(p: &str) -> String {
    p.split('/').map(seg).collect::<Vec<_>>().join("/")
}
