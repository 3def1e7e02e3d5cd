//! The virtual I2C bus over a stream socket (protocol.md §10), so host code in any language can
//! drive emulated chips.
//!
//! ```text
//! request:  op(1) | addr(1) | len(2, BE) | data(len, only for a write)
//!           op: 'W' write, 'R' read, 'P' power-cycle (len = 0)
//! response: ack(1) | data(len, only for an ACKed read)
//!           ack: 0x00 ACK, 0x01 NACK, 0x02 no device at addr
//! ```
//! Each connection gets its own thread; transactions on one chip are serialized by its lock.
//! An unknown op closes the connection (the stream can no longer be trusted to be in step).

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use crate::bus::{Bus, BusError};

/// Write op.
pub const OP_WRITE: u8 = b'W';
/// Read op.
pub const OP_READ: u8 = b'R';
/// Power-cycle op.
pub const OP_POWER: u8 = b'P';
/// Transaction acknowledged.
pub const ACK: u8 = 0x00;
/// Chip NACKed (busy, asleep, processing).
pub const NACK: u8 = 0x01;
/// No device at the address.
pub const NO_DEVICE: u8 = 0x02;

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

impl Listener {
    /// Binds `127.0.0.1:PORT` (any `host:port`) or `unix:PATH`.
    pub fn bind(spec: &str) -> io::Result<Self> {
        match spec.strip_prefix("unix:") {
            Some(path) => {
                let path = PathBuf::from(path);
                Ok(Self::Unix(UnixListener::bind(&path)?, path))
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

    /// Accepts clients forever, one thread each.
    pub fn serve(&self, bus: &Bus) -> io::Result<()> {
        loop {
            match self {
                Self::Tcp(l) => {
                    let (s, _) = l.accept()?;
                    s.set_nodelay(true)?;
                    let bus = bus.clone();
                    std::thread::spawn(move || serve_client(s, &bus));
                }
                Self::Unix(l, _) => {
                    let (s, _) = l.accept()?;
                    let bus = bus.clone();
                    std::thread::spawn(move || serve_client(s, &bus));
                }
            }
        }
    }
}

fn ack_of(r: Result<(), BusError>) -> u8 {
    match r {
        Ok(()) => ACK,
        Err(BusError::Nack(_)) => NACK,
        Err(BusError::NoDevice) => NO_DEVICE,
    }
}

/// Serves one client until it disconnects or sends garbage. Returns why it stopped.
pub fn serve_client<S: Read + Write>(mut s: S, bus: &Bus) -> io::Result<()> {
    let mut data = Vec::new();
    loop {
        let mut head = [0u8; 4];
        match s.read_exact(&mut head) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            r => r?,
        }
        let [op, addr, hi, lo] = head;
        let len = u16::from_be_bytes([hi, lo]) as usize;
        match op {
            OP_WRITE => {
                data.resize(len, 0);
                s.read_exact(&mut data)?;
                s.write_all(&[ack_of(bus.write(addr, &data))])?;
            }
            OP_READ => {
                data.resize(len, 0);
                match bus.read(addr, &mut data) {
                    Ok(()) => {
                        let mut out = Vec::with_capacity(1 + len);
                        out.push(ACK);
                        out.extend_from_slice(&data);
                        s.write_all(&out)?;
                    }
                    Err(e) => s.write_all(&[ack_of(Err(e))])?,
                }
            }
            OP_POWER => s.write_all(&[ack_of(bus.power_cycle(addr))])?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown virtual-bus op 0x{op:02X}"),
                ))
            }
        }
        s.flush()?;
    }
}
