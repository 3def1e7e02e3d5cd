//! The virtual I2C bus over TCP and Unix sockets, spoken byte for byte as protocol.md §10
//! describes it, plus many concurrent clients.
#![allow(clippy::unwrap_used)]

mod common;

use core::time::Duration;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use sesame_chip::server::Listener;
use sesame_chip::{Bus, Chip, ChipConfig, ChipOptions, SimClock};
use sesame_wire::{Request, ResponseFrame, Status};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(20));

/// A chip at `addr`, reopened with the wanted timing (the fab helper builds untimed chips).
fn chip_at(addr: u8, realistic_timing: bool) -> Chip {
    let mut config = ChipConfig::new([0x5E, 0, 0, 0, 0, 0, 0, 0, addr]);
    config.i2c_address = addr;
    let (_, storage, _) = common::chip_with(config, addr.into());
    let options = ChipOptions {
        realistic_timing,
        rng_seed: Some(addr.into()),
        ..Default::default()
    };
    Chip::open(Box::new(storage), options).unwrap()
}

/// Binds `spec`, serves `bus` on a background thread and returns the address to connect to.
/// The thread lives until the test process ends.
fn serve(spec: &str, bus: &Bus) -> String {
    let listener = Listener::bind(spec).unwrap();
    let addr = listener.local_addr().unwrap();
    let bus = bus.clone();
    std::thread::spawn(move || listener.serve(&bus));
    addr
}

fn tcp(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(TIMEOUT).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A raw client: every method sends exactly one request and reads exactly its answer.
struct Client<S>(S);

impl<S: Read + Write> Client<S> {
    fn ack(&mut self) -> u8 {
        let mut a = [0u8; 1];
        self.0.read_exact(&mut a).unwrap();
        a[0]
    }

    fn write(&mut self, addr: u8, frame: &[u8]) -> u8 {
        let len = u16::try_from(frame.len()).unwrap().to_be_bytes();
        let mut req = vec![b'W', addr, len[0], len[1]];
        req.extend_from_slice(frame);
        self.0.write_all(&req).unwrap();
        self.ack()
    }

    /// Returns the ack and, only when it is 00, the `len` data bytes.
    fn read(&mut self, addr: u8, len: u16) -> (u8, Vec<u8>) {
        let l = len.to_be_bytes();
        self.0.write_all(&[b'R', addr, l[0], l[1]]).unwrap();
        let ack = self.ack();
        let mut data = vec![0u8; if ack == 0 { len as usize } else { 0 }];
        self.0.read_exact(&mut data).unwrap();
        (ack, data)
    }

    fn power(&mut self, addr: u8) -> u8 {
        self.0.write_all(&[b'P', addr, 0, 0]).unwrap();
        self.ack()
    }

    /// STSELib's fetch: 5 bytes, then 3 + LEN bytes from byte 0 again; returns both reads.
    fn fetch_reads(&mut self, addr: u8) -> (Vec<u8>, Vec<u8>) {
        let (ack, head) = self.read(addr, 5);
        assert_eq!(ack, 0x00);
        let total = ResponseFrame::total_len(&head).unwrap();
        let (ack, full) = self.read(addr, u16::try_from(total).unwrap());
        assert_eq!(ack, 0x00);
        (head, full)
    }

    /// A fetch with nobody else on the chip: both reads see the same response.
    fn fetch(&mut self, addr: u8) -> Vec<u8> {
        let (head, full) = self.fetch_reads(addr);
        assert_eq!(full[..5], head);
        full
    }
}

/// Chip 0x20 untimed, chip 0x21 with realistic timing on `clock`.
fn conformance_bus() -> (Bus, SimClock) {
    let clock = SimClock::default();
    let bus = Bus::with_clock(Arc::new(clock.clone()));
    bus.attach(chip_at(0x20, false)).unwrap();
    bus.attach(chip_at(0x21, true)).unwrap();
    (bus, clock)
}

/// Every op and ack of §10 on one connection, then an unknown op that must close it.
fn speak_protocol<S: Read + Write>(stream: S, clock: &SimClock) {
    let mut c = Client(stream);
    // 'W' of an Echo frame (protocol.md §1.7) is ACKed with a single 00.
    assert_eq!(c.write(0x20, &[0x00, 0x01, 0x02, 0x03, 0xA7, 0x29]), 0x00);
    // 'R' of 5 bytes: 00 then the first 5 response bytes; then the full frame.
    assert_eq!(c.read(0x20, 5), (0x00, vec![0x00, 0x00, 0x05, 0x01, 0x02]));
    let full = c.fetch(0x20);
    assert_eq!(full, [0x00, 0x00, 0x05, 0x01, 0x02, 0x03, 0xA7, 0x29]);
    // A read past the end is still ACKed, padded with the idle bus's 0xFF.
    let (ack, long) = c.read(0x20, 12);
    assert_eq!(
        (ack, &long[..8], &long[8..]),
        (0x00, &full[..], &[0xFF; 4][..])
    );

    // No device: 02, and no data follows (the next exchange is still in step).
    assert_eq!(c.read(0x33, 5), (0x02, vec![]));
    assert_eq!(c.write(0x33, &[0x00, 0x01, 0x02, 0x03, 0xA7, 0x29]), 0x02);
    assert_eq!(c.power(0x33), 0x02);

    // NACK: a read before Generate Signature's 80 ms have passed on the timed chip.
    let sign = common::frame(&Request::GenerateSignature {
        slot: 0,
        digest: &[0x11; 32],
    });
    assert_eq!(c.write(0x21, &sign), 0x00);
    assert_eq!(c.read(0x21, 5), (0x01, vec![]));
    assert_eq!(c.write(0x21, &sign), 0x01, "writes are NACKed while busy");
    clock.advance(Duration::from_millis(80));
    let rsp = c.fetch(0x21);
    assert_eq!(
        ResponseFrame::decode(&rsp, false).unwrap().status(),
        Status::OK
    );
    assert_eq!(rsp.len(), 3 + 2 + 32 + 2 + 32 + 2);

    // 'P': ACKed, and the pending response is gone (reads NACK until the next write).
    assert_eq!(c.power(0x20), 0x00);
    assert_eq!(c.read(0x20, 5), (0x01, vec![]));
    assert_eq!(c.write(0x20, &common::frame(&Request::Echo(&[9]))), 0x00);
    assert_eq!(c.fetch(0x20)[..4], [0x00, 0x00, 0x03, 0x09]);

    // 'I' names the client (8 bytes): ACKed with a single 00; a wrong length is garbage.
    c.0.write_all(&[b'I', 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8])
        .unwrap();
    assert_eq!(c.ack(), 0x00);

    // An unknown op closes the connection: EOF, and nothing was left unread before it.
    c.0.write_all(&[b'X', 0x20, 0x00, 0x00]).unwrap();
    let mut rest = Vec::new();
    match c.0.read_to_end(&mut rest) {
        Ok(n) => assert_eq!((n, rest), (0, vec![])),
        // A reset is a close too; a timeout (WouldBlock/TimedOut) is not.
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
}

#[test]
fn tcp_speaks_the_virtual_bus_protocol() {
    let (bus, clock) = conformance_bus();
    let addr = serve("127.0.0.1:0", &bus);
    assert!(addr.starts_with("127.0.0.1:"));
    speak_protocol(tcp(&addr), &clock);
}

#[test]
fn unix_socket_speaks_the_virtual_bus_protocol() {
    let (bus, clock) = conformance_bus();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");
    let addr = serve(&format!("unix:{}", path.display()), &bus);
    assert_eq!(addr, format!("unix:{}", path.display()));
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(TIMEOUT).unwrap();
    speak_protocol(s, &clock);
}

const THREADS: u8 = 8;
const ROUNDS: u16 = 200;
const PAYLOAD: usize = 24;

/// The Echo payload of (chip, thread, round): distinct content.
fn payload(chip: u8, thread: u8, round: u16) -> Vec<u8> {
    let r = round.to_be_bytes();
    let mut p = vec![chip, thread, r[0], r[1]];
    p.resize(PAYLOAD, thread ^ r[1]);
    p
}

/// 8 clients, 200 Echo write+read pairs each, 4 clients per chip, payloads of varying lengths:
/// each client reads exactly its own answer (protocol.md §10.2), never another client's, never
/// one spliced from two.
#[test]
fn many_clients_at_once_each_read_their_own_answers() {
    let bus = Bus::new();
    bus.attach(chip_at(0x20, false)).unwrap();
    bus.attach(chip_at(0x21, false)).unwrap();
    let addr = serve("127.0.0.1:0", &bus);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let chip = 0x20 + t % 2;
                let mut c = Client(tcp(&addr));
                let mut busy = 0u32;
                for round in 0..ROUNDS {
                    let mut p = payload(chip, t, round);
                    p.truncate(4 + usize::from(round % 20));
                    let frame = common::frame(&Request::Echo(&p));
                    // Another client's answer is pending: its write is NACKed until taken.
                    loop {
                        match c.write(chip, &frame) {
                            0x00 => break,
                            0x01 => busy += 1,
                            other => panic!("ack {other:02X}"),
                        }
                    }
                    let (head, rsp) = c.fetch_reads(chip);
                    assert_eq!(rsp[..5], head, "both reads of one answer");
                    let r = ResponseFrame::decode(&rsp, false).unwrap();
                    assert_eq!(r.data, p, "another client's answer");
                }
                busy
            })
        })
        .collect();
    let busy: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("{busy} writes NACKed while another client's answer was pending");
}

/// The lease on simulated time: a client's answer is its own; another client's write is NACKed
/// until the owner has read all of it or the lease has run out, and a client never reads an
/// answer that is not its own.
#[test]
fn an_answer_is_leased_to_the_client_that_asked() {
    let clock = SimClock::default();
    let bus = Bus::with_clock(Arc::new(clock.clone()));
    bus.attach(chip_at(0x20, false)).unwrap();
    let (a, b) = (bus.new_client(), bus.new_client());
    let echo = |x: u8| common::frame(&Request::Echo(&[x]));
    let mut buf = [0u8; 6];

    // A asks; B can neither read A's answer nor replace it.
    bus.write_as(a, 0x20, &echo(1)).unwrap();
    assert!(bus.read_as(b, 0x20, &mut buf[..5]).is_err());
    assert!(bus.write_as(b, 0x20, &echo(2)).is_err());
    // A reads part of it: still A's. Once A has read all of it, B may write.
    bus.read_as(a, 0x20, &mut buf[..5]).unwrap();
    assert!(bus.write_as(b, 0x20, &echo(2)).is_err());
    bus.read_as(a, 0x20, &mut buf).unwrap();
    assert_eq!(buf[3], 1);
    bus.write_as(b, 0x20, &echo(2)).unwrap();
    // B's answer is B's: A is NACKed, B reads it.
    assert!(bus.read_as(a, 0x20, &mut buf).is_err());
    bus.read_as(b, 0x20, &mut buf).unwrap();
    assert_eq!(buf[3], 2);

    // A asks and never reads: B is NACKed for the lease, then its command runs, and A's late
    // read is NACKed rather than given B's answer.
    bus.write_as(a, 0x20, &echo(3)).unwrap();
    let lease = sesame_chip::DEFAULT_LEASE_BASE;
    clock.advance(lease - Duration::from_millis(1));
    assert!(bus.write_as(b, 0x20, &echo(4)).is_err());
    clock.advance(Duration::from_millis(1));
    bus.write_as(b, 0x20, &echo(4)).unwrap();
    assert!(bus.read_as(a, 0x20, &mut buf).is_err());
    bus.read_as(b, 0x20, &mut buf).unwrap();
    assert_eq!(buf[3], 4);

    // A power cycle ends every lease.
    bus.write_as(a, 0x20, &echo(5)).unwrap();
    bus.power_cycle(0x20).unwrap();
    bus.write_as(b, 0x20, &echo(6)).unwrap();
}

/// A slow command's lease lasts a few of its processing times (protocol.md §10.2).
#[test]
fn a_lease_lasts_a_few_command_times() {
    let clock = SimClock::default();
    let bus = Bus::with_clock(Arc::new(clock.clone()));
    bus.attach(chip_at(0x21, true)).unwrap();
    let (a, b) = (bus.new_client(), bus.new_client());
    let sign = common::frame(&Request::GenerateSignature {
        slot: 0,
        digest: &[0x11; 32],
    });
    bus.write_as(a, 0x21, &sign).unwrap();
    let lease = sesame_chip::DEFAULT_LEASE_BASE
        + sesame_chip::processing_time(sesame_wire::CommandCode::GENERATE_SIGNATURE)
            * sesame_chip::LEASE_FACTOR;
    clock.advance(lease - Duration::from_millis(1));
    assert!(bus.write_as(b, 0x21, &sign).is_err());
    clock.advance(Duration::from_millis(1));
    bus.write_as(b, 0x21, &sign).unwrap();
}

/// With one client per chip nothing can interleave: every answer is exactly the client's own.
#[test]
fn one_client_per_chip_always_reads_its_own_answer() {
    let bus = Bus::new();
    let chips = [0x20u8, 0x21, 0x22, 0x23];
    for a in chips {
        bus.attach(chip_at(a, false)).unwrap();
    }
    let addr = serve("127.0.0.1:0", &bus);
    let threads: Vec<_> = chips
        .into_iter()
        .map(|chip| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = Client(tcp(&addr));
                for round in 0..ROUNDS {
                    // Varying lengths are fine here: nobody else writes to this chip.
                    let mut p = payload(chip, 0, round);
                    p.truncate(4 + usize::from(round % 20));
                    assert_eq!(c.write(chip, &common::frame(&Request::Echo(&p))), 0x00);
                    let rsp = c.fetch(chip);
                    assert_eq!(ResponseFrame::decode(&rsp, false).unwrap().data, p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
