//! A STOMP 1.2 client over TCP: the transport MOSIP uses (through ActiveMQ) between its registration processor and an ABIS.
//!
//! MOSIP's registration processor puts ABIS requests on the `mosip-to-abis` queue and reads
//! responses from `abis-to-mosip` (MOSIP `registration-processor-abis.json`); Tessera's ABIS
//! consumes the first and publishes on the second, and Tessera as a client of a commercial ABIS
//! does the reverse. The JSON travels as a JMS text or bytes message, as the deployment chooses,
//! so both kinds of body are sent and accepted here.
//!
//! Protocol: STOMP 1.2 (<https://stomp.github.io/stomp-specification-1.2.html>). Frames are
//! `COMMAND EOL *(header EOL) EOL body NUL`; header names and values are UTF-8 and escaped
//! (`\r` `\n` `\c` `\\`) in every frame but CONNECT and CONNECTED; the first of repeated headers
//! wins; `content-length` lets a body contain NUL; EOLs between frames are heart-beats.
//!
//! How bodies map to JMS messages on ActiveMQ 5 and Artemis: a frame with `content-length`
//! becomes a `BytesMessage`, one without becomes a `TextMessage`. [`Body::Text`] is therefore
//! sent without `content-length` (and refused if it contains NUL, which JSON text never does
//! unescaped), [`Body::Bytes`] with it.
//!
//! Durability: subscriptions use `ack:client-individual`, and nothing is acknowledged until the
//! caller calls [`Subscription::ack`] (or [`Connection::ack`]) for that message, which waits for
//! the broker's RECEIPT. A consumer that crashes, or whose connection drops, before that leaves
//! the message with the broker, which redelivers it (with `redelivered:true`) to the next
//! consumer. Handling must therefore be idempotent (MOSIP's ABIS requests carry a single-use
//! `requestId` for that). On ActiveMQ 5 a NACK is a "poison ack": the message goes to the dead
//! letter queue at once, it is not retried; leave a message unacknowledged to have it retried.
//!
//! Destinations: on ActiveMQ 5 a queue is `/queue/NAME`, so MOSIP's queues are
//! `/queue/mosip-to-abis` and `/queue/abis-to-mosip`. MOSIP's own deployment runs ActiveMQ
//! Artemis, which names a destination by its address and takes its kind from a
//! `destination-type:ANYCAST` header or a prefix its acceptor is configured with; that, and
//! Artemis's `consumer-window-size` in place of ActiveMQ's `activemq.prefetchSize`, go in the
//! options' extra headers. Only ActiveMQ 5.17 (Debian's package) is tested here.
//!
//! The broker should set TCP_NODELAY on its side too (ActiveMQ: `transport.tcpNoDelay=true` on
//! the connector URI): without it, Nagle's algorithm and delayed ACKs hold each RECEIPT back for
//! tens of milliseconds, and a receipt-per-message consumer drops to about 50 messages/s.
//!
//! One background task per connection owns the socket: it writes queued frames, sends
//! heart-beats when idle, reads and routes frames (MESSAGE to its subscription, RECEIPT to its
//! waiter), and ends the connection on the first ERROR frame, read error, malformed frame or
//! missed heart-beat. After that every call returns the same error: reconnecting (with back-off)
//! is the caller's business; [`StompError::is_fatal`] says when it is needed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest frame, sent or received, headers and body together. MOSIP's ABIS messages are small
/// JSON documents (the biometrics travel by `referenceURL`); 16 MiB leaves room for a CBEFF sent
/// inline and bounds what a broker can make us buffer.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Most headers in one frame (ActiveMQ sends about ten on a MESSAGE).
pub const MAX_HEADERS: usize = 64;
/// Longest header line, escaped, without its EOL (ActiveMQ's own limit is 10 KiB).
pub const MAX_HEADER_LINE_BYTES: usize = 8 * 1024;
/// Prefetch (unacknowledged messages in flight to one subscription) when none is given: enough
/// to keep a consumer busy while its acknowledgements travel, few enough that several ABIS
/// workers on one queue share the load.
pub const DEFAULT_PREFETCH: u32 = 16;
/// Largest prefetch accepted, and the most received messages a subscription holds before the
/// caller takes them. A broker that sends more than the prefetch ignores flow control: the
/// connection is ended ([`StompError::Overrun`]) rather than buffering without bound.
pub const MAX_PREFETCH: u32 = 1024;
/// Frames queued for the socket before senders wait.
const OUTGOING_QUEUE: usize = 64;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes of an ERROR frame's body kept (ActiveMQ puts a Java stack trace there).
const MAX_ERROR_DETAIL_BYTES: usize = 4096;
/// A peer is declared dead after this many of its heart-beat periods of silence (STOMP 1.2
/// asks for "some tolerance"). ActiveMQ checks once per period whether it wrote anything during
/// the last one, so up to two periods can pass between its writes; a third allows for load.
const HEARTBEAT_TOLERANCE: u32 = 3;

/// Limits on frames, sent and received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_headers: usize,
    pub max_header_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_bytes: MAX_FRAME_BYTES, max_headers: MAX_HEADERS, max_header_line_bytes: MAX_HEADER_LINE_BYTES }
    }
}

/// A STOMP 1.2 command: the client's and the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Connected,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Message,
    Receipt,
    Error,
}

impl Command {
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Connected,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str().as_bytes() == bytes)
    }

    /// CONNECT and CONNECTED (and STOMP, CONNECT's synonym) carry their headers unescaped, for
    /// compatibility with STOMP 1.0 (STOMP 1.2, "Value Encoding").
    fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be encoded or decoded. Never repeats the frame's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes or more exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("more than {limit} headers in a frame")]
    TooManyHeaders { limit: usize },
    #[error("a header line longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("unknown command")]
    UnknownCommand,
    #[error("header line without a colon")]
    MissingColon,
    #[error("empty header name")]
    EmptyHeaderName,
    #[error("undefined escape sequence in a header")]
    BadEscape,
    #[error("header or command is not UTF-8")]
    NotUtf8,
    #[error("carriage return not followed by line feed")]
    BareCarriageReturn,
    #[error("NUL in a header")]
    NulInHeader,
    #[error("header `{name}` of a {command} frame cannot be sent unescaped (it contains a colon, CR or LF)")]
    Unescapable { command: Command, name: String },
    #[error("content-length is not a decimal byte count")]
    BadContentLength,
    #[error("content-length does not match the body")]
    ContentLengthMismatch,
    #[error("body is not followed by NUL")]
    MissingNul,
    #[error("body contains NUL but the frame has no content-length")]
    NulInBody,
}

/// A STOMP frame. Headers keep their order and repetitions; [`Frame::header`] reads the first.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for Frame {
    /// Shows headers (the passcode hidden) and the body's length, never the body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (k.as_str(), if k == "passcode" { "<redacted>" } else { v.as_str() })).collect();
        f.debug_struct("Frame").field("command", &self.command).field("headers", &headers).field("body_len", &self.body.len()).finish()
    }
}

impl Frame {
    #[must_use]
    pub fn new(command: Command) -> Self {
        Frame { command, headers: Vec::new(), body: Vec::new() }
    }

    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header of that name (STOMP 1.2: only the first of repeated headers counts).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The frame on the wire.
    ///
    /// # Errors
    /// A limit exceeded; a header that cannot be represented (NUL anywhere, or a colon, CR or LF
    /// in a CONNECT frame); a body with NUL but no `content-length`, or a `content-length` that
    /// does not match the body.
    pub fn encode(&self, limits: &Limits) -> Result<Vec<u8>, FrameError> {
        if self.headers.len() > limits.max_headers {
            return Err(FrameError::TooManyHeaders { limit: limits.max_headers });
        }
        let escape = self.command.escapes_headers();
        let mut out = Vec::with_capacity(64 + self.headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>());
        out.extend_from_slice(self.command.as_str().as_bytes());
        out.push(b'\n');
        let mut declared_length = None;
        for (name, value) in &self.headers {
            if name.is_empty() {
                return Err(FrameError::EmptyHeaderName);
            }
            if name.contains('\0') || value.contains('\0') {
                return Err(FrameError::NulInHeader);
            }
            let start = out.len();
            if escape {
                escape_into(name, &mut out);
                out.push(b':');
                escape_into(value, &mut out);
            } else {
                if name.contains([':', '\r', '\n']) || value.contains(['\r', '\n']) {
                    return Err(FrameError::Unescapable { command: self.command, name: name.clone() });
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend_from_slice(value.as_bytes());
            }
            if out.len() - start > limits.max_header_line_bytes {
                return Err(FrameError::HeaderTooLong { limit: limits.max_header_line_bytes });
            }
            out.push(b'\n');
            if name == "content-length" && declared_length.is_none() {
                declared_length = Some(value.as_str());
            }
        }
        match declared_length {
            Some(v) if parse_content_length(v.as_bytes()) != Some(self.body.len()) => return Err(FrameError::ContentLengthMismatch),
            None if self.body.contains(&0) => return Err(FrameError::NulInBody),
            _ => {}
        }
        let size = out.len() + 1 + self.body.len() + 1;
        if size > limits.max_frame_bytes {
            return Err(FrameError::TooLarge { size, limit: limits.max_frame_bytes });
        }
        out.reserve_exact(self.body.len() + 2);
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        Ok(out)
    }
}

fn escape_into(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(b),
        }
    }
}

/// STOMP 1.2: "Undefined escape sequences such as `\t` MUST be treated as a fatal protocol error."
fn unescape(raw: &[u8]) -> Result<String, FrameError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match it.next() {
            Some(b'r') => b'\r',
            Some(b'n') => b'\n',
            Some(b'c') => b':',
            Some(b'\\') => b'\\',
            _ => return Err(FrameError::BadEscape),
        });
    }
    String::from_utf8(out).map_err(|_| FrameError::NotUtf8)
}

fn parse_content_length(v: &[u8]) -> Option<usize> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Turns a byte stream into frames, however it is split into reads. Heart-beats (EOLs between
/// frames) are skipped. Holds at most one partial frame plus the last read.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the bytes not yet decoded.
    pos: usize,
    /// For a body without content-length: how far past the frame start NUL has been looked for,
    /// so a large body arriving in many reads is scanned once.
    scanned: usize,
    limits: Limits,
}

impl Decoder {
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Decoder { buf: Vec::new(), pos: 0, scanned: 0, limits }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, or `None` until more bytes arrive. After an error the stream
    /// cannot be resynchronised: the connection must be closed.
    ///
    /// # Errors
    /// A malformed frame or an exceeded limit (detected as early as the bytes allow, so a peer
    /// cannot make this buffer grow past the limits).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        // Heart-beats and the optional EOLs after a frame's NUL.
        loop {
            match self.buf.get(self.pos..).unwrap_or_default() {
                [b'\n', ..] => self.pos += 1,
                [b'\r', b'\n', ..] => self.pos += 2,
                [b'\r'] | [] => return Ok(None),
                [b'\r', ..] => return Err(FrameError::BareCarriageReturn),
                _ => break,
            }
            self.scanned = 0;
        }
        let frame_start = self.pos;
        let buf = &self.buf[frame_start..];
        let lim = self.limits;
        // The command line and the header lines, up to the blank line.
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        loop {
            let window_end = buf.len().min(at + lim.max_header_line_bytes + 2);
            let window = buf.get(at..window_end).unwrap_or_default();
            let Some(nl) = window.iter().position(|&b| b == b'\n') else {
                if buf.len() - at > lim.max_header_line_bytes + 1 {
                    return Err(FrameError::HeaderTooLong { limit: lim.max_header_line_bytes });
                }
                return Ok(None);
            };
            let mut line = &window[..nl];
            at += nl + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > lim.max_header_line_bytes {
                return Err(FrameError::HeaderTooLong { limit: lim.max_header_line_bytes });
            }
            if line.contains(&b'\r') {
                return Err(FrameError::BareCarriageReturn);
            }
            if line.contains(&0) {
                return Err(FrameError::NulInHeader);
            }
            if line.is_empty() {
                break;
            }
            lines.push(line);
            if lines.len() > lim.max_headers + 1 {
                return Err(FrameError::TooManyHeaders { limit: lim.max_headers });
            }
            if at > lim.max_frame_bytes {
                return Err(FrameError::TooLarge { size: at, limit: lim.max_frame_bytes });
            }
        }
        let body_start = at;
        let Some((command_line, header_lines)) = lines.split_first() else {
            // Unreachable: leading EOLs were skipped, so the first line is not empty.
            return Err(FrameError::UnknownCommand);
        };
        let command = Command::parse(command_line).ok_or(FrameError::UnknownCommand)?;
        let mut headers = Vec::with_capacity(header_lines.len());
        for line in header_lines {
            let colon = line.iter().position(|&b| b == b':').ok_or(FrameError::MissingColon)?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.is_empty() {
                return Err(FrameError::EmptyHeaderName);
            }
            let (name, value) = if command.escapes_headers() {
                (unescape(name)?, unescape(value)?)
            } else {
                let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| FrameError::NotUtf8);
                (utf8(name)?, utf8(value)?)
            };
            headers.push((name, value));
        }
        let content_length = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.as_bytes());
        let body_end = match content_length {
            Some(v) => {
                let len = parse_content_length(v).ok_or(FrameError::BadContentLength)?;
                let size = body_start.saturating_add(len).saturating_add(1);
                if size > lim.max_frame_bytes {
                    return Err(FrameError::TooLarge { size, limit: lim.max_frame_bytes });
                }
                match buf.get(body_start + len) {
                    None => return Ok(None),
                    Some(0) => body_start + len,
                    Some(_) => return Err(FrameError::MissingNul),
                }
            }
            None => {
                let from = self.scanned.max(body_start);
                match buf.get(from..).unwrap_or_default().iter().position(|&b| b == 0) {
                    Some(i) => from + i,
                    None => {
                        if buf.len() >= lim.max_frame_bytes {
                            return Err(FrameError::TooLarge { size: buf.len() + 1, limit: lim.max_frame_bytes });
                        }
                        self.scanned = buf.len();
                        return Ok(None);
                    }
                }
            }
        };
        if body_end + 1 > lim.max_frame_bytes {
            return Err(FrameError::TooLarge { size: body_end + 1, limit: lim.max_frame_bytes });
        }
        let body = buf[body_start..body_end].to_vec();
        self.pos = frame_start + body_end + 1;
        self.scanned = 0;
        Ok(Some(Frame { command, headers, body }))
    }
}

/// An ERROR frame from the broker. Its body (often a stack trace, and which a broker may fill
/// with the offending frame) is kept, truncated, in `detail`, but is never displayed or debug-printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerError {
    /// The `message` header: the broker's short description.
    pub message: String,
    /// The `receipt-id` header: the receipt of the frame that caused the error, if it asked for one.
    pub receipt_id: Option<String>,
    detail: String,
}

impl BrokerError {
    fn from_frame(frame: &Frame) -> Self {
        let body = frame.body.get(..MAX_ERROR_DETAIL_BYTES).unwrap_or(&frame.body);
        BrokerError {
            message: frame.header("message").unwrap_or("(no message header)").to_owned(),
            receipt_id: frame.header("receipt-id").map(str::to_owned),
            detail: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// The ERROR frame's body, truncated to 4 KiB.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Debug for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerError")
            .field("message", &self.message)
            .field("receipt_id", &self.receipt_id)
            .field("detail_len", &self.detail.len())
            .finish()
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What went wrong. Every error but [`StompError::Invalid`] and [`StompError::InvalidOption`]
/// (refused here, before anything was sent) leaves the connection closed: see [`StompError::is_fatal`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StompError {
    #[error("cannot connect to the broker at {addr}: {message}")]
    Connect { addr: String, kind: std::io::ErrorKind, message: String },
    /// An ERROR frame in reply to CONNECT: bad credentials, unknown virtual host.
    #[error("the broker refused the connection: {0}")]
    Refused(BrokerError),
    /// An ERROR frame on an established connection (an unauthorised destination, a malformed
    /// frame). The broker closes the connection after it.
    #[error("the broker reported an error: {0}")]
    Broker(BrokerError),
    #[error("I/O error on the broker connection: {message}")]
    Io { kind: std::io::ErrorKind, message: String },
    #[error("the broker connection is closed")]
    Closed,
    #[error("nothing heard from the broker for {0:?}: heart-beats missed")]
    HeartbeatTimeout(Duration),
    #[error("no {what} from the broker within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("malformed frame from the broker: {0}")]
    Frame(FrameError),
    #[error("STOMP protocol violation by the broker: {0}")]
    Protocol(&'static str),
    #[error("unexpected {0} frame from the broker")]
    Unexpected(Command),
    #[error("the broker speaks STOMP {0}, not 1.2")]
    Version(String),
    #[error("more than {MAX_PREFETCH} messages received and not yet taken: the broker ignores the prefetch")]
    Overrun,
    /// A frame refused before sending; the connection is still usable.
    #[error("frame not sent: {0}")]
    Invalid(FrameError),
    /// A bad argument, refused before sending; the connection is still usable.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
}

impl StompError {
    /// Whether the connection is gone: the caller should back off and reconnect. False only for
    /// a frame or option refused locally, before anything was sent.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        !matches!(self, StompError::Invalid(_) | StompError::InvalidOption(_))
    }

    fn io(e: &std::io::Error) -> Self {
        StompError::Io { kind: e.kind(), message: e.to_string() }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Config {
    /// `host:port` of the broker's STOMP connector (ActiveMQ's default port is 61613).
    pub addr: String,
    /// The `host` header: the virtual host (ActiveMQ ignores it; Artemis and RabbitMQ do not).
    pub host: String,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// How often we offer to send heart-beats, and want to receive them; zero disables each.
    pub heartbeat_send: Duration,
    pub heartbeat_receive: Duration,
    /// For the TCP connection and the CONNECTED reply together.
    pub connect_timeout: Duration,
    /// For each RECEIPT waited on. A receipt that does not come in time ends the connection,
    /// since what the broker did with the frame is then unknown.
    pub receipt_timeout: Duration,
    pub limits: Limits,
}

impl Config {
    /// Defaults: virtual host `localhost`, no credentials, heart-beats every 10 s both ways,
    /// 10 s to connect, 30 s per receipt, the default [`Limits`].
    #[must_use]
    pub fn new(addr: impl Into<String>) -> Self {
        Config {
            addr: addr.into(),
            host: "localhost".into(),
            login: None,
            passcode: None,
            heartbeat_send: Duration::from_secs(10),
            heartbeat_receive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            receipt_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }

    #[must_use]
    pub fn with_credentials(mut self, login: impl Into<String>, passcode: impl Into<String>) -> Self {
        self.login = Some(login.into());
        self.passcode = Some(passcode.into());
        self
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("host", &self.host)
            .field("login", &self.login)
            .field("passcode", &self.passcode.as_ref().map(|_| "<redacted>"))
            .field("heartbeat_send", &self.heartbeat_send)
            .field("heartbeat_receive", &self.heartbeat_receive)
            .field("connect_timeout", &self.connect_timeout)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What the broker said in CONNECTED, and the heart-beats agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The `server` header, e.g. `ActiveMQ/5.17.2`.
    pub server: Option<String>,
    /// The `session` header.
    pub session: Option<String>,
    /// We send something at least this often.
    pub send_every: Option<Duration>,
    /// The broker sends something at least this often; silence for three times as long ends the connection.
    pub receive_every: Option<Duration>,
}

/// STOMP 1.2 "Heart-beating": each side sends at the larger of what it offers and what the
/// other wants, and not at all if either says 0. `client` is (can send, wants), as sent in
/// CONNECT; `server` is the CONNECTED reply in the same order from the server's side.
fn negotiate_heartbeats(client: (u64, u64), server: (u64, u64)) -> (Option<Duration>, Option<Duration>) {
    let pick = |ours: u64, theirs: u64| (ours != 0 && theirs != 0).then(|| Duration::from_millis(ours.max(theirs)));
    (pick(client.0, server.1), pick(client.1, server.0))
}

fn parse_heartbeat(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    let num = |s: &str| if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None };
    Some((num(a)?, num(b)?))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A message body to send.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    /// Sent without `content-length`: a JMS `TextMessage` on ActiveMQ and Artemis. Must not
    /// contain NUL.
    Text(&'a str),
    /// Sent with `content-length`: a JMS `BytesMessage`; any bytes.
    Bytes(&'a [u8]),
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Text(s) => write!(f, "Text({} bytes)", s.len()),
            Body::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

/// How to SEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOptions {
    /// The `content-type` header, e.g. `application/json;charset=utf-8`.
    pub content_type: Option<String>,
    /// `persistent:true`: the broker stores the message before acknowledging it (ActiveMQ's
    /// STOMP default is non-persistent, which also keeps NACKed messages out of the dead letter queue).
    pub persistent: bool,
    /// Wait for the broker's RECEIPT; without it `send` returns once the frame is queued.
    pub receipt: bool,
    /// More headers (e.g. `expires`, `priority`, `correlation-id`, `reply-to`).
    pub headers: Vec<(String, String)>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions { content_type: None, persistent: true, receipt: true, headers: Vec::new() }
    }
}

/// How to SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Most unacknowledged messages in flight to this subscription (ActiveMQ's
    /// `activemq.prefetchSize`), 1 to [`MAX_PREFETCH`].
    pub prefetch: u32,
    /// More headers (e.g. `selector`).
    pub headers: Vec<(String, String)>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions { prefetch: DEFAULT_PREFETCH, headers: Vec::new() }
    }
}

/// A received MESSAGE. Acknowledge it with [`Subscription::ack`] once it is handled.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    destination: String,
    message_id: String,
    subscription: String,
    ack: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl fmt::Debug for Message {
    /// The body may hold personal data: only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("destination", &self.destination)
            .field("message_id", &self.message_id)
            .field("redelivered", &self.redelivered())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Message {
    fn from_frame(frame: Frame) -> Result<Self, StompError> {
        let get = |name: &'static str| frame.header(name).map(str::to_owned);
        let destination = get("destination").ok_or(StompError::Protocol("MESSAGE without destination"))?;
        let message_id = get("message-id").ok_or(StompError::Protocol("MESSAGE without message-id"))?;
        let subscription = get("subscription").ok_or(StompError::Protocol("MESSAGE without subscription"))?;
        let ack = get("ack");
        Ok(Message { destination, message_id, subscription, ack, headers: frame.headers, body: frame.body })
    }

    #[must_use]
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The broker's id for the message, the same on every redelivery.
    #[must_use]
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Whether the broker delivered it before (ActiveMQ's `redelivered:true`).
    #[must_use]
    pub fn redelivered(&self) -> bool {
        self.header("redelivered") == Some("true")
    }

    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The first header of that name.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The body, whether the sender sent text or bytes.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    #[must_use]
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    /// When it is not UTF-8.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }
}

type Waiter = oneshot::Sender<Result<(), StompError>>;
type Delivery = Result<Message, StompError>;

/// A frame on its way to the socket, with what the connection task must know before writing it
/// (so that a reply cannot arrive before its waiter is registered).
struct Outgoing {
    bytes: Vec<u8>,
    receipt: Option<(String, Waiter)>,
    control: Control,
}

enum Control {
    None,
    Subscribe(String, mpsc::Sender<Delivery>),
    Unsubscribe(String),
}

/// What a connection shares between its handles and its task.
struct Inner {
    out: mpsc::Sender<Outgoing>,
    /// Why the connection ended, once it has.
    dead: Arc<Mutex<Option<StompError>>>,
    task: JoinHandle<()>,
    ids: AtomicU64,
    limits: Limits,
    receipt_timeout: Duration,
    session: Session,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    fn dead_reason(&self) -> StompError {
        self.dead.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or(StompError::Closed)
    }

    /// Ends the connection now, recording `why` unless it already ended for another reason.
    fn kill(&self, why: StompError) {
        self.dead.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(why);
        self.task.abort();
    }

    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues `frame` (with a receipt request when `receipt`) and, if asked, waits for the RECEIPT.
    async fn submit(&self, mut frame: Frame, control: Control, receipt: bool) -> Result<(), StompError> {
        let waiter = if receipt {
            let id = self.next_id("r");
            frame.headers.push(("receipt".into(), id.clone()));
            let (tx, rx) = oneshot::channel();
            Some(((id, tx), rx))
        } else {
            None
        };
        let bytes = frame.encode(&self.limits).map_err(StompError::Invalid)?;
        if let Some(why) = self.dead.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Err(why);
        }
        let (receipt, rx) = waiter.map_or((None, None), |(r, rx)| (Some(r), Some(rx)));
        self.out.send(Outgoing { bytes, receipt, control }).await.map_err(|_| self.dead_reason())?;
        let Some(rx) = rx else { return Ok(()) };
        match tokio::time::timeout(self.receipt_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.dead_reason()),
            Err(_) => {
                let e = StompError::Timeout { what: "RECEIPT", after: self.receipt_timeout };
                self.kill(e.clone());
                Err(e)
            }
        }
    }

    async fn acknowledge(&self, command: Command, message: &Message) -> Result<(), StompError> {
        let id = message
            .ack
            .as_deref()
            .ok_or(StompError::InvalidOption("the message has no ack header (not a client-individual subscription)"))?;
        self.submit(Frame::new(command).with_header("id", id), Control::None, true).await
    }
}

/// A connection to a STOMP 1.2 broker. Cheap handles ([`Subscription`]s) share it; it closes
/// when the last is dropped, or at once with [`Connection::abort`].
#[derive(Debug)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("session", &self.session).finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects, sends CONNECT (STOMP 1.2 only) and waits for CONNECTED.
    ///
    /// # Errors
    /// [`StompError::Connect`] when the TCP connection fails; [`StompError::Refused`] when the
    /// broker answers with ERROR (bad credentials); [`StompError::Version`] when it does not
    /// speak 1.2; [`StompError::Timeout`] after `config.connect_timeout`.
    pub async fn connect(config: &Config) -> Result<Self, StompError> {
        let handshake = async {
            let mut stream = TcpStream::connect(&config.addr).await.map_err(|e| StompError::Connect {
                addr: config.addr.clone(),
                kind: e.kind(),
                message: e.to_string(),
            })?;
            // Frames are written whole; Nagle would only delay small ones (ACKs, receipts).
            stream.set_nodelay(true).map_err(|e| StompError::io(&e))?;
            let ours = (millis(config.heartbeat_send), millis(config.heartbeat_receive));
            let mut connect = Frame::new(Command::Connect).with_header("accept-version", "1.2").with_header("host", config.host.as_str());
            if let Some(login) = &config.login {
                connect = connect.with_header("login", login.as_str());
            }
            if let Some(passcode) = &config.passcode {
                connect = connect.with_header("passcode", passcode.as_str());
            }
            connect = connect.with_header("heart-beat", format!("{},{}", ours.0, ours.1));
            let bytes = connect.encode(&config.limits).map_err(StompError::Invalid)?;
            stream.write_all(&bytes).await.map_err(|e| StompError::io(&e))?;
            let mut decoder = Decoder::new(config.limits);
            let mut chunk = vec![0u8; READ_CHUNK];
            let reply = loop {
                if let Some(frame) = decoder.next_frame().map_err(StompError::Frame)? {
                    break frame;
                }
                let n = stream.read(&mut chunk).await.map_err(|e| StompError::io(&e))?;
                if n == 0 {
                    return Err(StompError::Closed);
                }
                decoder.push(&chunk[..n]);
            };
            match reply.command {
                Command::Connected => {}
                Command::Error => return Err(StompError::Refused(BrokerError::from_frame(&reply))),
                other => return Err(StompError::Unexpected(other)),
            }
            // A 1.0 server sends no version header.
            let version = reply.header("version").unwrap_or("1.0");
            if version != "1.2" {
                return Err(StompError::Version(version.chars().take(16).collect()));
            }
            let theirs = match reply.header("heart-beat") {
                None => (0, 0),
                Some(v) => parse_heartbeat(v).ok_or(StompError::Protocol("malformed heart-beat header in CONNECTED"))?,
            };
            let (send_every, receive_every) = negotiate_heartbeats(ours, theirs);
            let session = Session {
                server: reply.header("server").map(str::to_owned),
                session: reply.header("session").map(str::to_owned),
                send_every,
                receive_every,
            };
            Ok((stream, decoder, session))
        };
        let (stream, decoder, session) = tokio::time::timeout(config.connect_timeout, handshake)
            .await
            .map_err(|_| StompError::Timeout { what: "CONNECTED", after: config.connect_timeout })??;
        tracing::debug!(addr = %config.addr, server = ?session.server, "STOMP connected");
        let (out, rx) = mpsc::channel(OUTGOING_QUEUE);
        let dead = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(stream, decoder, rx, session.clone(), Arc::clone(&dead)));
        Ok(Connection {
            inner: Arc::new(Inner {
                out,
                dead,
                task,
                ids: AtomicU64::new(0),
                limits: config.limits,
                receipt_timeout: config.receipt_timeout,
                session,
            }),
        })
    }

    #[must_use]
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// False once the connection has ended, for whatever reason.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.inner.dead.lock().unwrap_or_else(PoisonError::into_inner).is_none() && !self.inner.task.is_finished()
    }

    /// Sends a message to `destination` (on ActiveMQ `/queue/NAME` or `/topic/NAME`).
    ///
    /// # Errors
    /// [`StompError::Invalid`] (connection still usable) for a frame over the limits or text
    /// containing NUL; [`StompError::Broker`] when the broker refuses it (e.g. not authorised);
    /// any fatal error the connection met.
    pub async fn send(&self, destination: &str, body: Body<'_>, options: &SendOptions) -> Result<(), StompError> {
        let mut frame = Frame::new(Command::Send).with_header("destination", destination);
        if let Some(ct) = &options.content_type {
            frame = frame.with_header("content-type", ct.as_str());
        }
        if options.persistent {
            frame = frame.with_header("persistent", "true");
        }
        frame.headers.extend(options.headers.iter().filter(|(k, _)| k != "content-length").cloned());
        frame.body = match body {
            Body::Text(text) => {
                if text.as_bytes().contains(&0) {
                    return Err(StompError::Invalid(FrameError::NulInBody));
                }
                text.as_bytes().to_vec()
            }
            Body::Bytes(bytes) => {
                // Checked before copying, so an oversized body is refused without a copy.
                if bytes.len() >= self.inner.limits.max_frame_bytes {
                    return Err(StompError::Invalid(FrameError::TooLarge { size: bytes.len(), limit: self.inner.limits.max_frame_bytes }));
                }
                frame.headers.push(("content-length".into(), bytes.len().to_string()));
                bytes.to_vec()
            }
        };
        self.inner.submit(frame, Control::None, options.receipt).await
    }

    /// Subscribes to `destination` with `ack:client-individual` and waits for the broker's
    /// RECEIPT, so messages sent after this returns are delivered to it.
    ///
    /// # Errors
    /// [`StompError::InvalidOption`] for a prefetch outside 1..=[`MAX_PREFETCH`]; an ERROR from
    /// the broker (not authorised to read); any fatal error the connection met.
    pub async fn subscribe(&self, destination: &str, options: &SubscribeOptions) -> Result<Subscription, StompError> {
        if !(1..=MAX_PREFETCH).contains(&options.prefetch) {
            return Err(StompError::InvalidOption("prefetch must be between 1 and MAX_PREFETCH"));
        }
        let id = self.inner.next_id("s");
        let mut frame = Frame::new(Command::Subscribe)
            .with_header("id", id.as_str())
            .with_header("destination", destination)
            .with_header("ack", "client-individual")
            .with_header("activemq.prefetchSize", options.prefetch.to_string());
        frame.headers.extend(options.headers.iter().cloned());
        // One slot beyond the limit, for the error that ends the connection.
        let (tx, rx) = mpsc::channel(MAX_PREFETCH as usize + 1);
        self.inner.submit(frame, Control::Subscribe(id.clone(), tx), true).await?;
        Ok(Subscription { inner: Arc::clone(&self.inner), id, rx, active: true })
    }

    /// Acknowledges one message (STOMP ACK with its `ack` id) and waits for the broker's RECEIPT:
    /// when this returns Ok the broker will not deliver it again.
    ///
    /// # Errors
    /// [`StompError::InvalidOption`] for a message without an `ack` header; any fatal error.
    pub async fn ack(&self, message: &Message) -> Result<(), StompError> {
        self.inner.acknowledge(Command::Ack, message).await
    }

    /// Rejects one message and waits for the RECEIPT. On ActiveMQ 5 the message goes straight
    /// to the dead letter queue (if persistent); to have it retried, do not acknowledge it at all.
    ///
    /// # Errors
    /// As [`Connection::ack`].
    pub async fn nack(&self, message: &Message) -> Result<(), StompError> {
        self.inner.acknowledge(Command::Nack, message).await
    }

    /// Sends DISCONNECT, waits for its RECEIPT (so everything sent before has been processed),
    /// then closes the socket. Subscriptions of this connection end.
    ///
    /// # Errors
    /// Any fatal error met before the receipt came.
    pub async fn disconnect(self) -> Result<(), StompError> {
        let result = self.inner.submit(Frame::new(Command::Disconnect), Control::None, true).await;
        self.inner.kill(StompError::Closed);
        result
    }

    /// Closes the socket at once, without DISCONNECT, as a crash would: unacknowledged messages
    /// go back to the broker's queue.
    pub fn abort(&self) {
        self.inner.kill(StompError::Closed);
    }
}

/// Messages of one SUBSCRIBE. Dropping it unsubscribes (best effort, without waiting).
#[derive(Debug)]
pub struct Subscription {
    inner: Arc<Inner>,
    id: String,
    rx: mpsc::Receiver<Delivery>,
    active: bool,
}

impl Subscription {
    /// The subscription id (the `subscription` header of its messages).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next message. Cancel-safe: a `next` dropped (e.g. by a timeout) loses nothing.
    ///
    /// # Errors
    /// The fatal error that ended the connection.
    pub async fn next(&mut self) -> Result<Message, StompError> {
        match self.rx.recv().await {
            Some(delivery) => delivery,
            None => Err(self.inner.dead_reason()),
        }
    }

    /// [`Connection::ack`].
    ///
    /// # Errors
    /// As [`Connection::ack`].
    pub async fn ack(&self, message: &Message) -> Result<(), StompError> {
        self.inner.acknowledge(Command::Ack, message).await
    }

    /// [`Connection::nack`].
    ///
    /// # Errors
    /// As [`Connection::nack`].
    pub async fn nack(&self, message: &Message) -> Result<(), StompError> {
        self.inner.acknowledge(Command::Nack, message).await
    }

    /// Sends UNSUBSCRIBE and waits for the RECEIPT. Messages received and not acknowledged go
    /// back to the queue.
    ///
    /// # Errors
    /// Any fatal error the connection met.
    pub async fn unsubscribe(mut self) -> Result<(), StompError> {
        self.active = false;
        let frame = Frame::new(Command::Unsubscribe).with_header("id", self.id.as_str());
        self.inner.submit(frame, Control::Unsubscribe(self.id.clone()), true).await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let frame = Frame::new(Command::Unsubscribe).with_header("id", self.id.as_str());
        if let Ok(bytes) = frame.encode(&self.inner.limits) {
            let _ = self.inner.out.try_send(Outgoing { bytes, receipt: None, control: Control::Unsubscribe(self.id.clone()) });
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Routing state of the connection task.
#[derive(Default)]
struct Routes {
    receipts: HashMap<String, Waiter>,
    subscriptions: HashMap<String, mpsc::Sender<Delivery>>,
}

/// The connection task: runs until the connection ends, then tells every waiter why.
async fn run(stream: TcpStream, decoder: Decoder, rx: mpsc::Receiver<Outgoing>, session: Session, dead: Arc<Mutex<Option<StompError>>>) {
    let mut routes = Routes::default();
    let why = drive(stream, decoder, rx, &session, &dead, &mut routes).await;
    tracing::debug!(error = %why, "STOMP connection ended");
    let why = dead.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(why).clone();
    for (_, waiter) in routes.receipts.drain() {
        let _ = waiter.send(Err(why.clone()));
    }
    for (_, sub) in routes.subscriptions.drain() {
        let _ = sub.try_send(Err(why.clone()));
    }
}

async fn drive(
    mut stream: TcpStream,
    mut decoder: Decoder,
    mut rx: mpsc::Receiver<Outgoing>,
    session: &Session,
    dead: &Mutex<Option<StompError>>,
    routes: &mut Routes,
) -> StompError {
    let (mut rd, mut wr) = stream.split();
    let mut chunk = vec![0u8; READ_CHUNK];
    let silence = session.receive_every.map(|d| d * HEARTBEAT_TOLERANCE);
    let mut last_read = Instant::now();
    let mut last_write = Instant::now();
    // Frames already decoded with CONNECTED (a broker may pipeline).
    if let Err(e) = route_all(&mut decoder, routes) {
        return e;
    }
    loop {
        tokio::select! {
            read = rd.read(&mut chunk) => {
                let n = match read {
                    Ok(0) => return StompError::Closed,
                    Ok(n) => n,
                    Err(e) => return StompError::io(&e),
                };
                last_read = Instant::now();
                decoder.push(&chunk[..n]);
                if let Err(e) = route_all(&mut decoder, routes) {
                    return e;
                }
            }
            outgoing = rx.recv() => {
                // Every handle dropped: nobody is left to use the connection.
                let Some(outgoing) = outgoing else { return StompError::Closed };
                // Aborting takes effect at the task's next await; nothing queued may be written
                // after `abort` returned (an ACK written then would lose a message meant to be redelivered).
                if let Some(why) = dead.lock().unwrap_or_else(PoisonError::into_inner).clone() {
                    return why;
                }
                if let Some((id, waiter)) = outgoing.receipt {
                    routes.receipts.insert(id, waiter);
                }
                match outgoing.control {
                    Control::None => {}
                    Control::Subscribe(id, tx) => { routes.subscriptions.insert(id, tx); }
                    Control::Unsubscribe(id) => { routes.subscriptions.remove(&id); }
                }
                if let Err(e) = wr.write_all(&outgoing.bytes).await {
                    return StompError::io(&e);
                }
                last_write = Instant::now();
            }
            () = sleep_until_opt(session.send_every.map(|d| last_write + d)) => {
                if let Err(e) = wr.write_all(b"\n").await {
                    return StompError::io(&e);
                }
                last_write = Instant::now();
            }
            () = sleep_until_opt(silence.map(|d| last_read + d)) => {
                return StompError::HeartbeatTimeout(silence.unwrap_or_default());
            }
        }
    }
}

/// Routes every complete frame in the decoder; the error that ends the connection, if any.
fn route_all(decoder: &mut Decoder, routes: &mut Routes) -> Result<(), StompError> {
    while let Some(frame) = decoder.next_frame().map_err(StompError::Frame)? {
        route(frame, routes)?;
    }
    Ok(())
}

fn route(frame: Frame, routes: &mut Routes) -> Result<(), StompError> {
    match frame.command {
        Command::Message => {
            let message = Message::from_frame(frame)?;
            let Some(sub) = routes.subscriptions.get(&message.subscription) else {
                // Unsubscribed meanwhile: never acknowledged, so the broker redelivers it elsewhere.
                tracing::debug!(subscription = %message.subscription, "MESSAGE for a subscription no longer held");
                return Ok(());
            };
            // Capacity is MAX_PREFETCH + 1; the last slot is kept for the closing error.
            if sub.capacity() <= 1 {
                return Err(StompError::Overrun);
            }
            if sub.try_send(Ok(message)).is_err() {
                routes.subscriptions.retain(|_, s| !s.is_closed());
            }
            Ok(())
        }
        Command::Receipt => {
            let id = frame.header("receipt-id").ok_or(StompError::Protocol("RECEIPT without receipt-id"))?;
            if let Some(waiter) = routes.receipts.remove(id) {
                let _ = waiter.send(Ok(()));
            }
            Ok(())
        }
        Command::Error => {
            // Every waiter, the one whose frame caused it included, gets this error once the
            // connection is marked dead, so a call made after it sees the same error.
            let error = BrokerError::from_frame(&frame);
            tracing::warn!(message = %error.message, "STOMP ERROR frame from the broker");
            Err(StompError::Broker(error))
        }
        other => Err(StompError::Unexpected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8], limits: Limits) -> Result<Vec<Frame>, FrameError> {
        let mut d = Decoder::new(limits);
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    fn one(bytes: &[u8]) -> Result<Frame, FrameError> {
        let mut frames = decode_all(bytes, Limits::default())?;
        assert_eq!(frames.len(), 1, "expected one frame");
        Ok(frames.remove(0))
    }

    #[test]
    fn decodes_an_activemq_message_with_escaped_headers() {
        let wire = b"MESSAGE\nexpires:0\ndestination:/queue/t1\nack:ID\\cvm-1\\c1\nsubscription:0\nmessage-id:ID\\cvm-1\\c2\\c-1\nfoo:a\\cb\\\\c\\r\\n\n\nhello\0\n";
        let f = one(wire).unwrap();
        assert_eq!(f.command, Command::Message);
        assert_eq!(f.header("ack"), Some("ID:vm-1:1"));
        assert_eq!(f.header("message-id"), Some("ID:vm-1:2:-1"));
        assert_eq!(f.header("foo"), Some("a:b\\c\r\n"));
        assert_eq!(f.body, b"hello");
    }

    #[test]
    fn connected_headers_are_not_unescaped() {
        let f = one(b"CONNECTED\nversion:1.2\nsession:a\\cb\nserver:x:y\n\n\0").unwrap();
        assert_eq!(f.header("session"), Some("a\\cb"));
        assert_eq!(f.header("server"), Some("x:y"));
    }

    #[test]
    fn undefined_escape_is_an_error() {
        assert_eq!(one(b"MESSAGE\nfoo:a\\tb\n\n\0"), Err(FrameError::BadEscape));
        assert_eq!(one(b"MESSAGE\nfoo:ab\\\n\n\0"), Err(FrameError::BadEscape));
    }

    #[test]
    fn crlf_lines_and_heartbeats_between_frames() {
        let frames = decode_all(b"\n\r\n\nRECEIPT\r\nreceipt-id:1\r\n\r\n\0\r\n\nRECEIPT\nreceipt-id:2\n\n\0", Limits::default()).unwrap();
        assert_eq!(frames.iter().map(|f| f.header("receipt-id")).collect::<Vec<_>>(), [Some("1"), Some("2")]);
        assert!(decode_all(b"\n\n\r\n", Limits::default()).unwrap().is_empty());
        assert_eq!(one(b"RECEIPT\rx\n\n\0"), Err(FrameError::BareCarriageReturn));
        assert_eq!(decode_all(b"\rX", Limits::default()), Err(FrameError::BareCarriageReturn));
    }

    #[test]
    fn first_of_repeated_headers_wins() {
        let f = one(b"MESSAGE\nfoo:1\nfoo:2\n\n\0").unwrap();
        assert_eq!(f.header("foo"), Some("1"));
        assert_eq!(f.headers.len(), 2);
    }

    #[test]
    fn content_length_body_may_hold_nul() {
        let f = one(b"MESSAGE\ncontent-length:4\n\na\0b\0\0").unwrap();
        assert_eq!(f.body, b"a\0b\0");
        assert_eq!(one(b"MESSAGE\ncontent-length:2\n\nabc\0"), Err(FrameError::MissingNul));
        assert_eq!(one(b"MESSAGE\ncontent-length:+2\n\nab\0"), Err(FrameError::BadContentLength));
        assert_eq!(one(b"MESSAGE\ncontent-length:99999999999999999999999\n\nab\0"), Err(FrameError::BadContentLength));
    }

    #[test]
    fn malformed_frames() {
        assert_eq!(one(b"HELLO\n\n\0"), Err(FrameError::UnknownCommand));
        assert_eq!(one(b"MESSAGE\nnocolon\n\n\0"), Err(FrameError::MissingColon));
        assert_eq!(one(b"MESSAGE\n:v\n\n\0"), Err(FrameError::EmptyHeaderName));
        assert_eq!(one(b"MESSAGE\nk:\xff\n\n\0"), Err(FrameError::NotUtf8));
        assert_eq!(one(b"MESSAGE\nk:a\0b\n\n\0"), Err(FrameError::NulInHeader));
    }

    #[test]
    fn limits_are_enforced_early() {
        let small = Limits { max_frame_bytes: 64, max_headers: 2, max_header_line_bytes: 16 };
        // Too many headers, before the blank line arrives.
        assert_eq!(decode_all(b"MESSAGE\na:1\nb:2\nc:3\n", small), Err(FrameError::TooManyHeaders { limit: 2 }));
        // A header line that never ends.
        assert_eq!(decode_all(&[b'M'; 40], small), Err(FrameError::HeaderTooLong { limit: 16 }));
        assert_eq!(decode_all(b"MESSAGE\nkkkkkkkkkkkkkkkkkkkk:v\n", small), Err(FrameError::HeaderTooLong { limit: 16 }));
        // A declared body over the limit: refused before it arrives.
        let roomy_lines = Limits { max_header_line_bytes: 32, ..small };
        assert!(matches!(decode_all(b"MESSAGE\ncontent-length:100\n\n", roomy_lines), Err(FrameError::TooLarge { .. })));
        // A body without NUL that keeps growing.
        let mut d = Decoder::new(small);
        d.push(b"MESSAGE\n\n");
        for _ in 0..10 {
            match d.next_frame() {
                Ok(None) => d.push(&[b'x'; 10]),
                Ok(Some(_)) => panic!("no frame expected"),
                Err(e) => {
                    assert!(matches!(e, FrameError::TooLarge { limit: 64, .. }));
                    return;
                }
            }
        }
        panic!("the oversized body was never refused");
    }

    #[test]
    fn encode_refuses_what_cannot_be_sent() {
        let l = Limits::default();
        assert_eq!(Frame::new(Command::Send).with_header("", "x").encode(&l), Err(FrameError::EmptyHeaderName));
        assert_eq!(Frame::new(Command::Send).with_header("a", "x\0").encode(&l), Err(FrameError::NulInHeader));
        assert!(matches!(Frame::new(Command::Connect).with_header("passcode", "a\nb").encode(&l), Err(FrameError::Unescapable { .. })));
        let mut f = Frame::new(Command::Send);
        f.body = b"a\0b".to_vec();
        assert_eq!(f.encode(&l), Err(FrameError::NulInBody));
        let f = f.with_header("content-length", "2");
        assert_eq!(f.encode(&l), Err(FrameError::ContentLengthMismatch));
        let small = Limits { max_frame_bytes: 32, ..l };
        let mut f = Frame::new(Command::Send).with_header("content-length", "40");
        f.body = vec![1; 40];
        assert!(matches!(f.encode(&small), Err(FrameError::TooLarge { limit: 32, .. })));
        let long = "x".repeat(MAX_HEADER_LINE_BYTES);
        assert_eq!(
            Frame::new(Command::Send).with_header("k", long).encode(&l),
            Err(FrameError::HeaderTooLong { limit: MAX_HEADER_LINE_BYTES })
        );
    }

    #[test]
    fn debug_hides_passcode_and_body() {
        let mut f = Frame::new(Command::Connect).with_header("passcode", "hunter2");
        f.body = b"secret-body".to_vec();
        let s = format!("{f:?}");
        assert!(!s.contains("hunter2") && !s.contains("secret-body"), "{s}");
        let c = Config::new("x:1").with_credentials("u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn heartbeat_negotiation_follows_the_spec() {
        // STOMP 1.2's example: client 0,1000 / server ... ; each side the larger, 0 disables.
        assert_eq!(negotiate_heartbeats((500, 300), (300, 500)), (Some(Duration::from_millis(500)), Some(Duration::from_millis(300))));
        assert_eq!(negotiate_heartbeats((0, 1000), (2000, 0)), (None, Some(Duration::from_millis(2000))));
        assert_eq!(negotiate_heartbeats((1000, 1000), (0, 0)), (None, None));
        assert_eq!(parse_heartbeat("10,20"), Some((10, 20)));
        assert_eq!(parse_heartbeat("10"), None);
        assert_eq!(parse_heartbeat("-1,2"), None);
    }

    fn header_text(escaped: bool) -> impl Strategy<Value = String> {
        if escaped { "[^\u{0}]{0,12}".boxed() } else { "[^\u{0}\r\n]{0,12}".boxed() }
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (proptest::sample::select(Command::ALL.to_vec()), any::<bool>()).prop_flat_map(|(command, with_length)| {
            let escaped = command.escapes_headers();
            let name = if escaped { "[^\u{0}]{1,12}".boxed() } else { "[^\u{0}\r\n:]{1,12}".boxed() };
            let headers = proptest::collection::vec((name.prop_filter("reserved", |n| n != "content-length"), header_text(escaped)), 0..8);
            let body = proptest::collection::vec(any::<u8>(), 0..300);
            (headers, body).prop_map(move |(headers, body)| {
                let mut f = Frame { command, headers, body };
                if with_length || f.body.contains(&0) {
                    f.headers.push(("content-length".into(), f.body.len().to_string()));
                }
                f
            })
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip_through_fragmented_reads(
            frames in proptest::collection::vec(arb_frame(), 1..5),
            beats in proptest::collection::vec(0usize..3, 5),
            cuts in proptest::collection::vec(1usize..64, 0..40),
        ) {
            let limits = Limits::default();
            let mut wire = Vec::new();
            for (f, n) in frames.iter().zip(&beats) {
                wire.extend(std::iter::repeat_n(b'\n', *n));
                wire.extend(f.encode(&limits).unwrap());
            }
            let mut d = Decoder::new(limits);
            let mut got = Vec::new();
            let mut rest = wire.as_slice();
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = Decoder::new(Limits { max_frame_bytes: 256, max_headers: 4, max_header_line_bytes: 32 });
            'outer: for c in &chunks {
                d.push(c);
                loop {
                    match d.next_frame() {
                        Ok(Some(f)) => prop_assert!(f.body.len() < 256),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            prop_assert!(d.buf.len() - d.pos <= 256 + 64);
        }

        #[test]
        fn stomp_like_bytes_never_panic(parts in proptest::collection::vec(proptest::sample::select(vec![
            &b"MESSAGE"[..], b"RECEIPT", b"ERROR", b"\n", b"\r\n", b"\r", b":", b"\\", b"\\c", b"\\n", b"\\t", b"\0",
            b"content-length:", b"3", b"99999999999999999999", b"a", b"\xff",
        ]), 0..60)) {
            let bytes: Vec<u8> = parts.concat();
            let _ = decode_all(&bytes, Limits { max_frame_bytes: 128, max_headers: 4, max_header_line_bytes: 32 });
        }
    }

    /// A fake broker on loopback: accepts one connection, answers CONNECT with `connected`, then
    /// runs `script` on the socket.
    async fn fake_broker<F, Fut>(connected: &'static [u8], script: F) -> String
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut d = Decoder::new(Limits::default());
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                d.push(&buf[..n]);
                if d.next_frame().unwrap().is_some() {
                    break;
                }
            }
            s.write_all(connected).await.unwrap();
            script(s).await;
        });
        addr
    }

    #[tokio::test]
    async fn silent_broker_is_detected_by_heartbeat() {
        let addr = fake_broker(b"CONNECTED\nversion:1.2\nheart-beat:100,100\n\n\0", |s| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        })
        .await;
        let mut config = Config::new(addr);
        config.heartbeat_receive = Duration::from_millis(100);
        let conn = Connection::connect(&config).await.unwrap();
        assert_eq!(conn.session().receive_every, Some(Duration::from_millis(100)));
        let start = std::time::Instant::now();
        let err = conn.subscribe("/queue/x", &SubscribeOptions::default()).await.unwrap_err();
        assert!(matches!(err, StompError::HeartbeatTimeout(_)), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(!conn.is_alive());
    }

    #[tokio::test]
    async fn client_sends_heartbeats_when_idle() {
        let (tx, rx) = oneshot::channel();
        let addr = fake_broker(b"CONNECTED\nversion:1.2\nheart-beat:0,50\n\n\0", |mut s| async move {
            let mut buf = [0u8; 64];
            let mut beats = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(600);
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                if n == 0 {
                    break;
                }
                beats += buf[..n].iter().filter(|&&b| b == b'\n').count();
            }
            let _ = tx.send(beats);
        })
        .await;
        let mut config = Config::new(addr);
        config.heartbeat_send = Duration::from_millis(50);
        let conn = Connection::connect(&config).await.unwrap();
        assert_eq!(conn.session().send_every, Some(Duration::from_millis(50)));
        let beats = rx.await.unwrap();
        assert!((5..=14).contains(&beats), "{beats} heart-beats in 600 ms at 50 ms");
        drop(conn);
    }

    #[tokio::test]
    async fn error_frame_fails_the_waiter_and_every_later_call() {
        let addr = fake_broker(b"CONNECTED\nversion:1.2\n\n\0", |mut s| async move {
            let mut d = Decoder::new(Limits::default());
            let mut buf = [0u8; 4096];
            let frame = loop {
                let n = s.read(&mut buf).await.unwrap();
                d.push(&buf[..n]);
                if let Some(f) = d.next_frame().unwrap() {
                    break f;
                }
            };
            let receipt = frame.header("receipt").unwrap().to_owned();
            let error =
                format!("ERROR\nmessage:User reader is not authorized to write to: queue://x\nreceipt-id:{receipt}\n\nstack trace\0");
            s.write_all(error.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        let conn = Connection::connect(&Config::new(addr)).await.unwrap();
        let err = conn.send("/queue/x", Body::Text("{}"), &SendOptions::default()).await.unwrap_err();
        let StompError::Broker(e) = &err else { panic!("{err:?}") };
        assert!(e.message.contains("not authorized"));
        assert!(e.receipt_id.is_some());
        assert_eq!(e.detail(), "stack trace");
        assert!(err.is_fatal());
        let again = conn.send("/queue/x", Body::Text("{}"), &SendOptions::default()).await.unwrap_err();
        assert!(matches!(again, StompError::Broker(_)), "{again:?}");
    }

    #[tokio::test]
    async fn refused_and_version_errors_at_connect() {
        let addr = fake_broker(b"ERROR\nmessage:User name [x] or password is invalid.\n\n\0", |_| async {}).await;
        let err = Connection::connect(&Config::new(addr)).await.unwrap_err();
        assert!(matches!(&err, StompError::Refused(e) if e.message.contains("password")), "{err:?}");
        let addr = fake_broker(b"CONNECTED\nversion:1.1\n\n\0", |_| async {}).await;
        assert!(matches!(Connection::connect(&Config::new(addr)).await, Err(StompError::Version(v)) if v == "1.1"));
        let addr = fake_broker(b"CONNECTED\n\n\0", |_| async {}).await;
        assert!(matches!(Connection::connect(&Config::new(addr)).await, Err(StompError::Version(v)) if v == "1.0"));
    }

    #[tokio::test]
    async fn broker_ignoring_prefetch_is_an_overrun() {
        let addr = fake_broker(b"CONNECTED\nversion:1.2\n\n\0", |mut s| async move {
            let mut d = Decoder::new(Limits::default());
            let mut buf = [0u8; 4096];
            let frame = loop {
                let n = s.read(&mut buf).await.unwrap();
                d.push(&buf[..n]);
                if let Some(f) = d.next_frame().unwrap() {
                    break f;
                }
            };
            let id = frame.header("id").unwrap().to_owned();
            let receipt = frame.header("receipt").unwrap().to_owned();
            s.write_all(format!("RECEIPT\nreceipt-id:{receipt}\n\n\0").as_bytes()).await.unwrap();
            for i in 0..=MAX_PREFETCH {
                let m = format!("MESSAGE\ndestination:/queue/x\nmessage-id:{i}\nsubscription:{id}\nack:{i}\n\n{{}}\0");
                if s.write_all(m.as_bytes()).await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
        let conn = Connection::connect(&Config::new(addr)).await.unwrap();
        let mut sub = conn.subscribe("/queue/x", &SubscribeOptions::default()).await.unwrap();
        // Nothing taken while the broker floods: the limit is on messages not yet taken.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut taken = 0;
        let err = loop {
            match sub.next().await {
                Ok(_) => taken += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, StompError::Overrun), "{err:?}");
        assert_eq!(taken, MAX_PREFETCH as usize);
    }

    #[tokio::test]
    async fn local_refusals_keep_the_connection() {
        let addr = fake_broker(b"CONNECTED\nversion:1.2\n\n\0", |s| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(s);
        })
        .await;
        let mut config = Config::new(addr);
        config.limits.max_frame_bytes = 1024;
        let conn = Connection::connect(&config).await.unwrap();
        let no_receipt = SendOptions { receipt: false, ..SendOptions::default() };
        let err = conn.send("/queue/x", Body::Bytes(&[0; 2048]), &no_receipt).await.unwrap_err();
        assert!(matches!(err, StompError::Invalid(FrameError::TooLarge { .. })) && !err.is_fatal(), "{err:?}");
        let err = conn.send("/queue/x", Body::Text("a\0b"), &no_receipt).await.unwrap_err();
        assert!(matches!(err, StompError::Invalid(FrameError::NulInBody)), "{err:?}");
        let err = conn.subscribe("/queue/x", &SubscribeOptions { prefetch: 0, ..SubscribeOptions::default() }).await.unwrap_err();
        assert!(matches!(err, StompError::InvalidOption(_)));
        assert!(conn.is_alive());
        conn.send("/queue/x", Body::Bytes(&[0; 100]), &no_receipt).await.unwrap();
    }
}
