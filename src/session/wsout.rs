//! The sending half of a websocket server loop (a session's pump, the multiplexed stream): a
//! non-blocking websocket whose queued bytes are counted, so the loop can stop producing for
//! a client that does not read, and notice one that has taken nothing for a while.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// The server side of an upgraded connection: inbound messages and frames capped at
/// `pump::MAX_IN`, writes unbuffered, at most `4 * out_cap` queued before a write fails.
pub fn accept<S: Read + Write>(stream: S, leftover: Vec<u8>, out_cap: usize) -> WebSocket<S> {
    let cfg = WebSocketConfig {
        max_message_size: Some(super::pump::MAX_IN),
        max_frame_size: Some(super::pump::MAX_IN),
        write_buffer_size: 0,
        max_write_buffer_size: out_cap * 4,
        ..WebSocketConfig::default()
    };
    WebSocket::from_partially_read(stream, leftover, Role::Server, Some(cfg))
}

pub struct WsOut<S: Read + Write> {
    pub ws: WebSocket<S>,
    /// Bytes handed to the websocket since it last flushed completely.
    pub pending: usize,
    /// Since when the socket has taken nothing of what is queued.
    pub stalled_since: Option<Instant>,
}

impl<S: Read + Write + AsRawFd> WsOut<S> {
    pub fn new(ws: WebSocket<S>) -> Self {
        WsOut {
            ws,
            pending: 0,
            stalled_since: None,
        }
    }

    /// Queue a message and push what the socket takes now; false once the client is gone.
    pub fn send(&mut self, m: Message) -> bool {
        let n = m.len();
        match self.ws.write(m) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        self.pending += n;
        self.flush()
    }

    pub fn flush(&mut self) -> bool {
        match self.ws.flush() {
            Ok(()) => {
                self.pending = 0;
                self.stalled_since = None;
                true
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stalled_since.get_or_insert_with(Instant::now);
                true
            }
            Err(_) => false,
        }
    }

    /// Send a close frame and give it a moment to leave.
    pub fn close(&mut self, code: CloseCode, reason: &'static str) {
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: Cow::Borrowed(reason),
        }));
        self.flush_for(Duration::from_secs(1));
    }

    /// Flush what is queued for the client, waiting for the socket up to `limit`.
    pub fn flush_for(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.ws.flush() {
                Ok(()) => break,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut p = libc::pollfd {
                        fd: self.ws.get_ref().as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 100) };
                }
                Err(_) => break,
            }
        }
    }
}
