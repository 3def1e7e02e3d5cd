//! The driver over the virtual I2C bus (protocol.md §10): every command on TCP and on a Unix
//! socket served by `sesame_chip::server::Listener`, NACK / no-device mapping, processing-time
//! polling on simulated time, timeouts, and reconnection through a proxy that breaks
//! connections.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{SimDelay, Spec};
use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource};
use sesame_chip::server::Listener;
use sesame_chip::{Bus, SimClock};
use sesame_host::socket::{SocketBus, SocketError};
use sesame_host::{Error, NoDelay, Stsafe};

/// Serves `bus` on `spec` from a background thread; returns the address to connect to.
fn serve(bus: &Bus, spec: &str) -> String {
    let listener = Listener::bind(spec).unwrap();
    let addr = listener.local_addr().unwrap();
    let bus = bus.clone();
    std::thread::spawn(move || listener.serve(&bus));
    addr
}

fn every_command_on(spec: &str) {
    let (bus, slot0) = common::bus();
    let addr = serve(&bus, spec);
    let mut se = Stsafe::new(SocketBus::connect(&addr).unwrap(), NoDelay, 0x20);
    let mut control = SocketBus::connect(&addr).unwrap();
    common::exercise::all_commands(&mut se, &slot0, &mut |a| control.power_cycle(a).unwrap());
}

#[test]
fn every_command_over_tcp() {
    every_command_on("127.0.0.1:0");
}

#[test]
fn every_command_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    every_command_on(&format!("unix:{}", dir.path().join("bus.sock").display()));
}

#[test]
fn nack_and_no_device_map_to_no_acknowledge() {
    let (bus, _) = common::bus();
    let addr = serve(&bus, "127.0.0.1:0");
    let mut sb = SocketBus::connect(&addr).unwrap();
    let mut buf = [0u8; 5];
    // Nothing to read yet: the chip NACKs.
    let e = sb.read(0x20, &mut buf).unwrap_err();
    assert_eq!(e, SocketError::Nack);
    assert!(matches!(e.kind(), ErrorKind::NoAcknowledge(_)));
    let e = sb.read(0x55, &mut buf).unwrap_err();
    assert_eq!(e, SocketError::NoDevice);
    assert_eq!(
        e.kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    );
    // The driver polls a missing device and gives up after its retries.
    let mut se = Stsafe::new(sb, NoDelay, 0x55);
    assert_eq!(se.init().map(|_| ()), Err(Error::NackTimeout));
}

#[test]
fn processing_times_are_polled_on_simulated_time() {
    let (chip, slot0) = common::chip(&Spec {
        realistic_timing: true,
        ..Spec::default()
    });
    let clock = SimClock::default();
    let bus = Bus::with_clock(Arc::new(clock.clone()));
    bus.attach(chip).unwrap();
    let addr = serve(&bus, "127.0.0.1:0");
    let delay = SimDelay::new(clock);
    let mut se = Stsafe::new(SocketBus::connect(&addr).unwrap(), delay.clone(), 0x20);
    se.init().unwrap();
    let before = delay.total();
    let sig = se.generate_signature(0, &[7u8; 32]).unwrap();
    let waited = delay.total() - before;
    // Generate Signature takes 80 ms on an A110: the driver polled every 10 ms until then.
    assert!(waited >= Duration::from_millis(80), "{waited:?}");
    assert!(waited <= Duration::from_millis(91), "{waited:?}");
    assert_eq!(sig.rs().len(), 64);
    let _ = slot0;
}

#[test]
fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().take(4).flatten().collect();
        std::thread::sleep(Duration::from_secs(5));
        drop(held);
    });
    // The client names itself on connecting (protocol.md §10.2): a server that never answers
    // fails the connection within the timeout.
    let e = SocketBus::with_timeout(&addr, Duration::from_millis(20)).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e:?}"
    );
}

/// How the proxy breaks connections.
#[derive(Clone, Copy)]
enum Break {
    /// Close cleanly after this many transactions on each connection.
    After(usize),
    /// Drop the connection when the n-th request (counted over all connections) arrives.
    AtRequest(usize, u8),
}

/// A virtual-bus proxy in front of `upstream` that breaks client connections as told; it sends
/// on `closed` after each connection it closed.
fn proxy(upstream: String, how: Break, closed: mpsc::Sender<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut seen = 0usize;
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut up = TcpStream::connect(&upstream).unwrap();
            let mut on_this = 0usize;
            loop {
                let mut head = [0u8; 4];
                if client.read_exact(&mut head).is_err() {
                    break;
                }
                seen += 1;
                on_this += 1;
                if let Break::AtRequest(n, op) = how {
                    if seen == n && head[0] == op {
                        break; // drop the client's connection without an answer
                    }
                }
                let len = u16::from_be_bytes([head[2], head[3]]) as usize;
                let mut data = vec![0u8; if b"WI".contains(&head[0]) { len } else { 0 }];
                client.read_exact(&mut data).unwrap();
                up.write_all(&head).unwrap();
                up.write_all(&data).unwrap();
                let mut ack = [0u8; 1];
                up.read_exact(&mut ack).unwrap();
                let mut rsp = vec![
                    0u8;
                    if head[0] == b'R' && ack[0] == 0 {
                        len
                    } else {
                        0
                    }
                ];
                up.read_exact(&mut rsp).unwrap();
                client.write_all(&ack).unwrap();
                client.write_all(&rsp).unwrap();
                if matches!(how, Break::After(k) if on_this == k) {
                    break;
                }
            }
            drop(client);
            let _ = closed.send(());
        }
    });
    addr
}

#[test]
fn reconnects_when_the_server_closed_the_connection() {
    let (bus, _) = common::bus();
    let upstream = serve(&bus, "127.0.0.1:0");
    // Each connection starts with the client's identity; each echo is three transactions
    // (write, read 5, read 3+LEN): one echo per connection.
    let (tx, closed) = mpsc::channel();
    let addr = proxy(upstream, Break::After(4), tx);
    let mut se = Stsafe::new(SocketBus::connect(&addr).unwrap(), NoDelay, 0x20);
    for i in 0..10u8 {
        let mut out = [0u8; 1];
        se.echo(&[i], &mut out).unwrap();
        assert_eq!(out, [i]);
        // The server hung up while the bus was idle; the next transaction sees it.
        closed.recv().unwrap();
    }
    let (sb, _) = se.release();
    assert_eq!(sb.reconnects(), 9, "{sb:?}");
}

#[test]
fn a_read_broken_halfway_is_retried_on_a_new_connection() {
    let (bus, _) = common::bus();
    let upstream = serve(&bus, "127.0.0.1:0");
    // Requests: I, then W, R(5), R(3+LEN) for the echo; the 3rd (a read) is dropped. The new
    // connection names the same client, so the chip still gives it its answer.
    let addr = proxy(upstream, Break::AtRequest(3, b'R'), mpsc::channel().0);
    let mut se = Stsafe::new(SocketBus::connect(&addr).unwrap(), NoDelay, 0x20);
    let mut out = [0u8; 3];
    se.echo(&[4, 5, 6], &mut out).unwrap();
    assert_eq!(out, [4, 5, 6]);
    assert_eq!(se.release().0.reconnects(), 1);
}

#[test]
fn a_write_broken_halfway_is_reported_and_the_next_command_works() {
    let (bus, _) = common::bus();
    let upstream = serve(&bus, "127.0.0.1:0");
    let addr = proxy(upstream, Break::AtRequest(2, b'W'), mpsc::channel().0);
    let mut se = Stsafe::new(SocketBus::connect(&addr).unwrap(), NoDelay, 0x20);
    let mut out = [0u8; 3];
    // The write may or may not have reached the chip: not retried behind the driver's back.
    assert!(matches!(
        se.echo(&[4, 5, 6], &mut out),
        Err(Error::Bus(SocketError::Io(_)))
    ));
    se.echo(&[7, 8, 9], &mut out).unwrap();
    assert_eq!(out, [7, 8, 9]);
}
