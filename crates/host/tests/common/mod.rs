//! Test support: software chips personalized in memory, delays on simulated time, and I2C
//! wrappers that record or tamper with the bytes the driver exchanges.
#![allow(dead_code, clippy::unwrap_used)]

pub mod exercise;

// The RustCrypto crates under the names the driver depends on them by (see Cargo.toml).
use p256_nostd as p256;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorType, I2c, Operation};
use sesame_chip::{
    default_command_policy, Bus, BusDevice, Chip, ChipConfig, ChipOptions, CommandPolicy,
    CurveName, Fab, MemStorage, PublicKeyBytes, SimClock, ZoneSpec,
};
use sesame_host::{NoDelay, Stsafe};
use sesame_wire::crc16::{crc16, crc16_digest};
use sesame_wire::resp::command_ac;
use sesame_wire::CommandCode;

pub const MAC_KEY: [u8; 16] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F,
];
pub const CIPHER_KEY: [u8; 16] = [
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F,
];
pub const PASSWORD: [u8; 16] = *b"sesame-password!";

/// Zone layout of the test chips: 0 certificate (1 KB, read-only), 1..3 plain (128, 256, 64),
/// 4 a counter at 1,000,000 with 32 data bytes, 5 readable and writable only under a host
/// C-MAC (32 bytes), 6 read-only holding a public key (128 bytes).
pub fn zones() -> Vec<ZoneSpec> {
    let mut z = ChipConfig::new([0; 9]).zones;
    z.push(ZoneSpec {
        read_ac: 1,
        update_ac: 1,
        ..ZoneSpec::plain(32)
    });
    z.push(ZoneSpec::read_only(128));
    z
}

/// A command policy: `protected` commands with AC host, `encrypted` ones with AC host and
/// command + response encryption, the rest free and plain.
pub fn policy(protected: &[CommandCode], encrypted: &[CommandCode]) -> Vec<CommandPolicy> {
    let mut p = default_command_policy();
    for e in p.iter_mut() {
        if protected.contains(&CommandCode(e.code)) {
            e.ac = command_ac::HOST;
        }
        if encrypted.contains(&CommandCode(e.code)) {
            e.ac = command_ac::HOST;
            e.encryption = 0x03;
        }
    }
    p
}

/// How to build a test chip.
pub struct Spec {
    pub address: u8,
    pub policy: Vec<CommandPolicy>,
    pub curve: CurveName,
    pub host_keys: bool,
    pub seed: u64,
    pub realistic_timing: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            address: 0x20,
            policy: default_command_policy(),
            curve: CurveName::P256,
            host_keys: true,
            seed: 7,
            realistic_timing: false,
        }
    }
}

/// A chip on the bench (BORN): slot-0 key, host keys, password (3 tries), zone 1 = 00 01 02 ..
pub fn fab(spec: &Spec) -> (Fab, PublicKeyBytes) {
    let mut config = ChipConfig::new([0x02, 0, 0, 0, 0, 0, 0, spec.address, spec.seed as u8]);
    config.zones = zones();
    config.policy = spec.policy.clone();
    config.i2c_address = spec.address;
    let options = ChipOptions {
        rng_seed: Some(spec.seed),
        realistic_timing: spec.realistic_timing,
        ..Default::default()
    };
    let mut fab = Fab::new(config, Box::new(MemStorage::new()), options).unwrap();
    let pk = fab.generate_key(0, spec.curve).unwrap();
    if spec.host_keys {
        fab.set_host_keys(MAC_KEY, CIPHER_KEY).unwrap();
    }
    fab.set_password(PASSWORD, 3).unwrap();
    fab.write_zone(0, 0, &[0x30, 0x82, 0x01, 0x00]).unwrap();
    let pattern: Vec<u8> = (0..128u8).collect();
    fab.write_zone(1, 0, &pattern).unwrap();
    let point = zone_signer().verifying_key().to_encoded_point(false);
    fab.write_zone(6, 0, point.as_bytes()).unwrap();
    (fab, pk)
}

/// The key whose public half is in zone 6 (SEC1 `04 X Y` at offset 0).
pub fn zone_signer() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()
}

/// A personalized, operational chip.
pub fn chip(spec: &Spec) -> (Chip, PublicKeyBytes) {
    let (fab, pk) = fab(spec);
    (fab.finish().unwrap(), pk)
}

/// A bus with one default chip at 0x20; returns the bus and the chip's slot-0 public key.
pub fn bus() -> (Bus, PublicKeyBytes) {
    bus_with(&Spec::default())
}

pub fn bus_with(spec: &Spec) -> (Bus, PublicKeyBytes) {
    let (c, pk) = chip(spec);
    let bus = Bus::new();
    bus.attach(c).unwrap();
    (bus, pk)
}

/// An initialized driver on `bus` at 0x20.
pub fn driver(bus: &Bus) -> Stsafe<BusDevice, NoDelay> {
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    se.init().unwrap();
    se
}

/// A `DelayNs` on simulated time: waiting moves the bus's clock forward, and every wait is
/// counted. Never sleeps.
#[derive(Clone, Default)]
pub struct SimDelay {
    pub clock: SimClock,
    pub calls: Arc<AtomicU64>,
    pub total_ns: Arc<AtomicU64>,
}

impl SimDelay {
    pub fn new(clock: SimClock) -> Self {
        Self {
            clock,
            ..Default::default()
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_ns.load(Ordering::SeqCst))
    }
}

impl DelayNs for SimDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.clock.advance(Duration::from_nanos(ns.into()));
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.total_ns.fetch_add(ns.into(), Ordering::SeqCst);
    }
}

/// One I2C transaction as the driver made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tx {
    /// A write that was acknowledged.
    Write(u8, Vec<u8>),
    /// A read that was acknowledged, with the bytes the driver received.
    Read(u8, Vec<u8>),
    /// A transaction that was not acknowledged or failed.
    Failed,
}

/// Records every transaction; the log is shared so that the test can read it while the driver
/// owns the wrapper.
#[derive(Clone)]
pub struct Recorder<I> {
    pub inner: I,
    pub log: Arc<Mutex<Vec<Tx>>>,
}

impl<I> Recorder<I> {
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            log: Arc::default(),
        }
    }

    pub fn take(&self) -> Vec<Tx> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Only the acknowledged writes.
    pub fn writes(&self) -> Vec<Vec<u8>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|t| match t {
                Tx::Write(_, b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }
}

impl<I: ErrorType> ErrorType for Recorder<I> {
    type Error = I::Error;
}

impl<I: I2c> I2c for Recorder<I> {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), I::Error> {
        for op in ops {
            let r = match op {
                Operation::Write(b) => self
                    .inner
                    .write(address, b)
                    .map(|()| Tx::Write(address, b.to_vec())),
                Operation::Read(b) => self
                    .inner
                    .read(address, b)
                    .map(|()| Tx::Read(address, b.to_vec())),
            };
            let entry = r.as_ref().map_or(Tx::Failed, Clone::clone);
            self.log.lock().unwrap().push(entry);
            r?;
        }
        Ok(())
    }
}

/// What [`Tamper`] alters, once, in the next protected exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Flip a bit of the C-MAC of the next protected command (CRC fixed).
    CommandMac,
    /// Flip a bit of the first payload byte (the ciphertext) of the next protected command.
    CommandPayload,
    /// Flip a bit of the R-MAC in the next full response read (CRC fixed).
    ResponseMac,
    /// Flip a bit of the first data byte (the ciphertext) of the next full response read.
    ResponseData,
    /// Flip a bit of the next full response read without fixing the CRC.
    ResponseNoFix,
}

/// An attacker on the bus: alters one exchange as told, recomputing the CRC so that only the
/// secure channel can notice.
#[derive(Clone)]
pub struct Tamper<I> {
    pub inner: I,
    pub attack: Arc<Mutex<Option<Attack>>>,
    /// The last command written carried a C-MAC: only its response is attacked.
    last_protected: bool,
}

impl<I> Tamper<I> {
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            attack: Arc::default(),
            last_protected: false,
        }
    }

    pub fn arm(&self, a: Attack) {
        *self.attack.lock().unwrap() = Some(a);
    }

    pub fn armed(&self) -> bool {
        self.attack.lock().unwrap().is_some()
    }
}

fn fix_command_crc(frame: &mut [u8]) {
    let n = frame.len();
    let crc = crc16(&frame[..n - 2]).to_be_bytes();
    frame[n - 2..].copy_from_slice(&crc);
}

fn fix_response_crc(frame: &mut [u8]) {
    let n = frame.len();
    let mut d = crc16_digest();
    d.update(&frame[..1]);
    d.update(&frame[3..n - 2]);
    frame[n - 2..].copy_from_slice(&d.finalize().to_be_bytes());
}

impl<I: ErrorType> ErrorType for Tamper<I> {
    type Error = I::Error;
}

impl<I: I2c> I2c for Tamper<I> {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), I::Error> {
        for op in ops {
            let mut attack = self.attack.lock().unwrap();
            match op {
                Operation::Write(b) => {
                    let protected = b.first().is_some_and(|h| h & 0x80 != 0);
                    self.last_protected = protected;
                    let mut frame = b.to_vec();
                    match *attack {
                        Some(Attack::CommandMac) if protected => {
                            let n = frame.len();
                            frame[n - 3] ^= 0x01;
                            fix_command_crc(&mut frame);
                            *attack = None;
                        }
                        Some(Attack::CommandPayload) if protected => {
                            frame[1] ^= 0x80;
                            fix_command_crc(&mut frame);
                            *attack = None;
                        }
                        _ => {}
                    }
                    drop(attack);
                    self.inner.write(address, &frame)?;
                }
                Operation::Read(buf) => {
                    drop(attack);
                    self.inner.read(address, buf)?;
                    let mut attack = self.attack.lock().unwrap();
                    let total = 3 + u16::from_be_bytes([buf[1], buf[2]]) as usize;
                    // Only the full read of a response long enough to carry data and an R-MAC.
                    if !self.last_protected || buf.len() != total || total < 9 || buf[0] != 0 {
                        continue;
                    }
                    match *attack {
                        Some(Attack::ResponseMac) => {
                            buf[total - 3] ^= 0x01;
                            fix_response_crc(buf);
                            *attack = None;
                        }
                        Some(Attack::ResponseData) => {
                            buf[3] ^= 0x01;
                            fix_response_crc(buf);
                            *attack = None;
                        }
                        Some(Attack::ResponseNoFix) => {
                            buf[3] ^= 0x01;
                            *attack = None;
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}
