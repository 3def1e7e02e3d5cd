//! The virtual I2C bus over a stream socket (protocol.md §10), so host code in any language can
//! drive emulated chips.
//!
//! ```text
//! request:  op(1) | addr(1) | len(2, BE) | data(len, only for a write or an identity)
//!           op: 'W' write, 'R' read, 'P' power-cycle (len = 0), 'I' identity (len = 8)
//! response: ack(1) | data(len, only for an ACKed read)
//!           ack: 0x00 ACK, 0x01 NACK, 0x02 no device at addr
//! ```
//!
//! Each connection is one bus client (protocol.md §10.2): a chip's answer goes only to the
//! client whose command produced it. Each connection gets its own thread with a small stack and
//! a 1 KB buffer; the number of connections is capped, an idle connection is closed, and a
//! connection that cannot get a thread is refused. Accept errors (out of file descriptors,
//! say) are logged and retried after a back-off: the server never stops on them. An unknown op
//! closes the connection (the stream can no longer be trusted to be in step).

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::bus::{Bus, BusError};
use crate::lease::ClientId;

mod unix;

/// Write op.
pub const OP_WRITE: u8 = b'W';
/// Read op.
pub const OP_READ: u8 = b'R';
/// Power-cycle op.
pub const OP_POWER: u8 = b'P';
/// Identity op: the 8 data bytes name the client from now on (protocol.md §10.2).
pub const OP_IDENTITY: u8 = b'I';
/// Transaction acknowledged.
pub const ACK: u8 = 0x00;
/// Chip NACKed (busy, asleep, processing, another client's answer).
pub const NACK: u8 = 0x01;
/// No device at the address.
pub const NO_DEVICE: u8 = 0x02;

/// Longest write passed to a chip; longer ones are read, dropped and NACKed, as a chip whose
/// receive buffer is full would. Reads longer than this are padded with the idle bus's 0xFF.
pub const MAX_TRANSFER: usize = 1024;

/// Stack of a connection's thread: a command's crypto runs on it, nothing large lives there.
const CLIENT_STACK: usize = 256 * 1024;

pub use crate::bus::Log;

/// Limits and reporting of a server.
#[derive(Clone)]
pub struct ServeOptions {
    /// Most connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// A connection with no request for this long is closed (also the longest wait for the rest
    /// of a request, and for a client to take its answer).
    pub idle_timeout: Duration,
    /// Sink for log lines.
    pub log: Log,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 256,
            idle_timeout: Duration::from_secs(300),
            log: Arc::new(|line| eprintln!("{line}")),
        }
    }
}

impl core::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP (loopback in practice).
    Tcp(TcpListener),
    /// Unix domain socket, removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A connection, either kind.
trait Conn: Read + Write + Send + 'static {
    fn set_timeouts(&self, t: Duration) -> io::Result<()>;
}

impl Conn for std::net::TcpStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_nodelay(true)?;
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Conn for std::os::unix::net::UnixStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Listener {
    /// Binds `127.0.0.1:PORT` (any `host:port`) or `unix:PATH`. A Unix socket path left by a
    /// server that is gone is replaced; a live server's socket, or a path that is not a socket,
    /// is refused with an error that says which.
    pub fn bind(spec: &str) -> io::Result<Self> {
        match spec.strip_prefix("unix:") {
            Some(path) => {
                let path = PathBuf::from(path);
                Ok(Self::Unix(unix::bind(&path)?, path))
            }
            None => Ok(Self::Tcp(TcpListener::bind(spec)?)),
        }
    }

    /// The address to connect to, in the same `host:port` / `unix:PATH` form.
    pub fn local_addr(&self) -> io::Result<String> {
        match self {
            Self::Tcp(l) => Ok(l.local_addr()?.to_string()),
            Self::Unix(_, p) => Ok(format!("unix:{}", p.display())),
        }
    }

    /// The Unix socket's path, if it is one.
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Unix(_, p) => Some(p),
            Self::Tcp(_) => None,
        }
    }

    /// On SIGINT or SIGTERM, from a thread of its own: waits for the commands in progress to
    /// finish (so every image holds a whole state), removes the Unix socket, and exits the
    /// process with status 0. Call before [`Listener::serve_with`].
    pub fn exit_on_signals(&self, bus: &Bus, log: Log) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let path = self.unix_path().map(std::path::Path::to_path_buf);
        let bus = bus.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let Some(sig) = signals.forever().next() else {
                    return;
                };
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                let chips = bus.all_chips();
                // Held until exit: no command starts after this, none is cut halfway.
                let _held: Vec<_> = chips
                    .iter()
                    .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()))
                    .collect();
                if let Some(p) = &path {
                    let _ = std::fs::remove_file(p);
                }
                log(&format!("{name}: stopped, socket removed"));
                std::process::exit(0);
            })?;
        Ok(())
    }

    /// Serves clients forever with the default [`ServeOptions`].
    pub fn serve(&self, bus: &Bus) -> io::Result<()> {
        self.serve_with(bus, &ServeOptions::default())
    }

    /// Serves clients forever, one thread each, within `options`' limits. Accept errors are
    /// logged and retried; nothing a client does stops the server.
    pub fn serve_with(&self, bus: &Bus, options: &ServeOptions) -> io::Result<()> {
        let active = Arc::new(AtomicUsize::new(0));
        let mut backoff = Backoff::default();
        loop {
            let accepted: io::Result<Box<dyn Conn>> = match self {
                Self::Tcp(l) => l.accept().map(|(s, _)| Box::new(s) as Box<dyn Conn>),
                Self::Unix(l, _) => l.accept().map(|(s, _)| Box::new(s) as Box<dyn Conn>),
            };
            match accepted {
                Ok(conn) => {
                    backoff.reset();
                    admit(conn, bus, options, &active);
                }
                Err(e) => backoff.wait(&e, &options.log),
            }
        }
    }
}

/// Waits after a failed accept: not at all for errors about one connection, and increasingly
/// (10 ms up to 1 s) for resource errors such as EMFILE, which only time and closed
/// connections cure. Logs the first error of a run, and then every 100th.
#[derive(Default)]
struct Backoff {
    delay: Duration,
    failures: u64,
}

impl Backoff {
    fn reset(&mut self) {
        self.delay = Duration::ZERO;
        self.failures = 0;
    }

    fn wait(&mut self, e: &io::Error, log: &Log) {
        let per_connection = matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
        );
        if per_connection {
            return;
        }
        if self.failures.is_multiple_of(100) {
            log(&format!(
                "accept failed ({e}); retrying with back-off (failure {})",
                self.failures + 1
            ));
        }
        self.failures += 1;
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        std::thread::sleep(self.delay);
    }
}

/// Serves `conn` on a thread of its own, or refuses it (closes it at once) when the server is
/// at its cap or no thread can be had.
fn admit(conn: Box<dyn Conn>, bus: &Bus, options: &ServeOptions, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::SeqCst) >= options.max_connections {
        active.fetch_sub(1, Ordering::SeqCst);
        (options.log)(&format!(
            "connection refused: {} connections already (the cap)",
            options.max_connections
        ));
        return;
    }
    if let Err(e) = conn.set_timeouts(options.idle_timeout) {
        active.fetch_sub(1, Ordering::SeqCst);
        (options.log)(&format!("connection refused: {e}"));
        return;
    }
    let (bus2, active2) = (bus.clone(), active.clone());
    let spawned = std::thread::Builder::new()
        .name("bus-client".into())
        .stack_size(CLIENT_STACK)
        .spawn(move || {
            let _ = serve_client(conn, &bus2);
            active2.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        // The closure, and the connection with it, was dropped: the client sees it closed.
        active.fetch_sub(1, Ordering::SeqCst);
        (options.log)(&format!("connection refused: cannot start a thread ({e})"));
    }
}

fn ack_of(r: Result<(), BusError>) -> u8 {
    match r {
        Ok(()) => ACK,
        Err(BusError::Nack(_)) => NACK,
        Err(BusError::NoDevice) => NO_DEVICE,
    }
}

/// Reads and drops `len` bytes.
fn skip<S: Read>(s: &mut S, mut len: usize, buf: &mut [u8]) -> io::Result<()> {
    while len > 0 {
        let n = len.min(buf.len());
        s.read_exact(&mut buf[..n])?;
        len -= n;
    }
    Ok(())
}

/// Serves one client until it disconnects, goes idle past the stream's read timeout, or sends
/// garbage. Returns why it stopped. The connection is one bus client, until it names itself
/// with an identity op.
pub fn serve_client<S: Read + Write>(mut s: S, bus: &Bus) -> io::Result<()> {
    let mut client: ClientId = bus.new_client();
    let mut buf = vec![0u8; MAX_TRANSFER];
    loop {
        let mut head = [0u8; 4];
        match s.read_exact(&mut head) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            r => r?,
        }
        let [op, addr, hi, lo] = head;
        let len = u16::from_be_bytes([hi, lo]) as usize;
        match op {
            OP_WRITE if len > MAX_TRANSFER => {
                skip(&mut s, len, &mut buf)?;
                s.write_all(&[NACK])?;
            }
            OP_WRITE => {
                s.read_exact(&mut buf[..len])?;
                s.write_all(&[ack_of(bus.write_as(client, addr, &buf[..len]))])?;
            }
            OP_READ => {
                let n = len.min(MAX_TRANSFER);
                match bus.read_as(client, addr, &mut buf[..n]) {
                    Ok(()) => {
                        s.write_all(&[ACK])?;
                        s.write_all(&buf[..n])?;
                        // Past the longest response the idle bus reads 0xFF.
                        let mut rest = len - n;
                        buf.fill(0xFF);
                        while rest > 0 {
                            let k = rest.min(buf.len());
                            s.write_all(&buf[..k])?;
                            rest -= k;
                        }
                    }
                    Err(e) => s.write_all(&[ack_of(Err(e))])?,
                }
            }
            OP_POWER => s.write_all(&[ack_of(bus.power_cycle(addr))])?,
            OP_IDENTITY if len == 8 => {
                let mut id = [0u8; 8];
                s.read_exact(&mut id)?;
                client = u64::from_be_bytes(id);
                s.write_all(&[ACK])?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown virtual-bus op 0x{op:02X} (len {len})"),
                ))
            }
        }
        s.flush()?;
    }
}
