//! [`SocketBus`] (feature `std`): an `embedded_hal::i2c::I2c` over sesame's virtual I2C bus
//! (protocol.md §10), on TCP (`host:port`) or a Unix socket (`unix:PATH`).
//!
//! ```text
//! request:  op(1) | addr(1) | len(2, BE) | data(len, only for a write)     op: 'W', 'R', 'P'
//! response: ack(1) | data(len, only for an ACKed read)   ack: 00 ACK, 01 NACK, 02 no device
//! ```
//!
//! Each `SocketBus` is one bus client: it names itself with a random identity on every
//! connection ('I' op, protocol.md §10.2), so a chip's answer to its command is read by it and
//! by no other client, also after a reconnection.
//!
//! Every transaction has a timeout. A connection found closed, or broken by an I/O error, is
//! replaced by a new one: at once before a transaction when the server has hung up, and for
//! the next transaction otherwise. A read broken halfway is retried once on a new connection
//! (reads are repeatable: the chip serves every read from its response's first byte); a
//! write is not (the chip may have run the command), its error goes to the driver.
//!
//! ```no_run
//! use sesame_host::{socket::SocketBus, NoDelay, Stsafe};
//! let bus = SocketBus::connect("127.0.0.1:7020")?; // or "unix:/tmp/bus.sock"
//! let mut se = Stsafe::new(bus, NoDelay, 0x20); // the server answers at once; use a real
//!                                                // delay with `sesame chip serve --timing`
//! se.init()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::string::{String, ToString};
use std::time::Duration;
use std::vec::Vec;

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

const OP_WRITE: u8 = b'W';
const OP_READ: u8 = b'R';
const OP_POWER: u8 = b'P';
const OP_IDENTITY: u8 = b'I';
const ACK: u8 = 0x00;
const NACK: u8 = 0x01;
const NO_DEVICE: u8 = 0x02;

/// The default timeout of one transaction.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A virtual-bus transaction that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketError {
    /// The chip NACKed (busy, asleep, nothing to read): ack 0x01.
    Nack,
    /// No device at this address: ack 0x02.
    NoDevice,
    /// The socket failed or timed out; the connection is replaced for the next transaction.
    Io(io::ErrorKind),
    /// The server answered a byte that is not an ack; the connection is dropped.
    Protocol(u8),
    /// A transfer longer than the 16-bit length field allows.
    TooLong,
}

impl core::fmt::Display for SocketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Nack => f.write_str("NACK"),
            Self::NoDevice => f.write_str("no device at this address"),
            Self::Io(k) => write!(f, "virtual bus I/O: {k}"),
            Self::Protocol(b) => write!(f, "virtual bus answered 0x{b:02X}, not an ack"),
            Self::TooLong => f.write_str("transfer longer than 65535 bytes"),
        }
    }
}

impl std::error::Error for SocketError {}

impl embedded_hal::i2c::Error for SocketError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Nack => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
            Self::NoDevice => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            Self::TooLong => ErrorKind::Overrun,
            Self::Io(_) | Self::Protocol(_) => ErrorKind::Other,
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Self::Tcp(s) => s,
            #[cfg(unix)]
            Self::Unix(s) => s,
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_nonblocking(on),
            #[cfg(unix)]
            Self::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// False when the server has closed the connection (or sent bytes nobody asked for).
    fn is_open(&mut self) -> bool {
        if self.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open =
            matches!(self.io().read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        open && self.set_nonblocking(false).is_ok()
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// An I2C bus on a virtual-bus server (`sesame chip serve`, or `sesame_chip::server`).
pub struct SocketBus {
    target: String,
    timeout: Duration,
    stream: Option<Stream>,
    reconnects: u64,
    client: u64,
}

impl core::fmt::Debug for SocketBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SocketBus")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("connected", &self.stream.is_some())
            .field("reconnects", &self.reconnects)
            .field("client", &format_args!("{:016X}", self.client))
            .finish()
    }
}

impl SocketBus {
    /// Connects to `host:port` or `unix:PATH` with [`DEFAULT_TIMEOUT`].
    pub fn connect(target: &str) -> io::Result<Self> {
        Self::with_timeout(target, DEFAULT_TIMEOUT)
    }

    /// Connects with a timeout for the connection and for every transaction.
    pub fn with_timeout(target: &str, timeout: Duration) -> io::Result<Self> {
        let mut bus = Self {
            target: target.to_string(),
            timeout,
            stream: None,
            reconnects: 0,
            client: new_identity(),
        };
        bus.stream = Some(bus.open()?);
        Ok(bus)
    }

    /// How many times a broken connection was replaced.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    fn open(&self) -> io::Result<Stream> {
        let stream = match self.target.strip_prefix("unix:") {
            #[cfg(unix)]
            Some(path) => Stream::Unix(UnixStream::connect(path)?),
            #[cfg(not(unix))]
            Some(_) => return Err(io::ErrorKind::Unsupported.into()),
            None => {
                let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
                let mut found = None;
                for addr in self.target.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, self.timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or(last)?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        };
        match &stream {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
            }
        }
        let mut stream = stream;
        let mut request = [OP_IDENTITY, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0];
        request[4..].copy_from_slice(&self.client.to_be_bytes());
        let io = stream.io();
        io.write_all(&request)?;
        io.flush()?;
        let mut ack = [0u8; 1];
        io.read_exact(&mut ack)?;
        if ack[0] != ACK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the virtual bus refused this client's identity",
            ));
        }
        Ok(stream)
    }

    /// A live connection: the current one unless the server closed it.
    fn stream(&mut self) -> Result<&mut Stream, SocketError> {
        if let Some(s) = self.stream.as_mut() {
            if !s.is_open() {
                self.stream = None;
            }
        }
        if self.stream.is_none() {
            let s = self.open().map_err(|e| SocketError::Io(e.kind()))?;
            self.reconnects += 1;
            self.stream = Some(s);
        }
        self.stream
            .as_mut()
            .ok_or(SocketError::Io(io::ErrorKind::NotConnected))
    }

    /// One request/response on the current connection.
    fn exchange(
        &mut self,
        op: u8,
        addr: u8,
        data: &[u8],
        read: &mut [u8],
    ) -> Result<(), SocketError> {
        let len = if op == OP_READ {
            read.len()
        } else {
            data.len()
        };
        let len = u16::try_from(len).map_err(|_| SocketError::TooLong)?;
        let s = self.stream()?.io();
        let io = |r: io::Result<()>| r.map_err(|e| SocketError::Io(e.kind()));
        // One write per request, so that a request is one segment on TCP.
        let mut request = Vec::with_capacity(4 + data.len());
        request.extend_from_slice(&[op, addr]);
        request.extend_from_slice(&len.to_be_bytes());
        request.extend_from_slice(data);
        io(s.write_all(&request))?;
        io(s.flush())?;
        let mut ack = [0u8; 1];
        io(s.read_exact(&mut ack))?;
        match ack[0] {
            ACK => {
                if op == OP_READ {
                    io(s.read_exact(read))?;
                }
                Ok(())
            }
            NACK => Err(SocketError::Nack),
            NO_DEVICE => Err(SocketError::NoDevice),
            other => Err(SocketError::Protocol(other)),
        }
    }

    fn transact(
        &mut self,
        op: u8,
        addr: u8,
        data: &[u8],
        read: &mut [u8],
    ) -> Result<(), SocketError> {
        let tries = if op == OP_READ { 2 } else { 1 };
        let mut result = Err(SocketError::Io(io::ErrorKind::NotConnected));
        for _ in 0..tries {
            result = self.exchange(op, addr, data, read);
            match result {
                Err(SocketError::Io(_) | SocketError::Protocol(_)) => self.stream = None,
                _ => return result,
            }
        }
        result
    }

    /// Power-cycles the device at `address`: its volatile state is lost, its NVM kept.
    pub fn power_cycle(&mut self, address: u8) -> Result<(), SocketError> {
        self.transact(OP_POWER, address, &[], &mut [])
    }
}

/// A client identity no other client picks: hashed from the process, the time and a counter
/// with the standard library's randomly keyed hasher.
fn new_identity() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    // The top bit clear: the server's own connection ids have it set.
    h.finish() >> 1
}

impl ErrorType for SocketBus {
    type Error = SocketError;
}

impl I2c for SocketBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        for op in operations {
            match op {
                Operation::Write(bytes) => self.transact(OP_WRITE, address, bytes, &mut [])?,
                Operation::Read(buf) => self.transact(OP_READ, address, &[], buf)?,
            }
        }
        Ok(())
    }
}
