//! The in-process I2C bus seen through `embedded_hal::i2c::I2c`: STSELib's two-read pattern,
//! several chips per bus, realistic timing on simulated time, hibernate, the I2C address
//! attribute, and sharing the bus with `embedded-hal-bus`.
#![allow(clippy::unwrap_used)]

mod common;

use core::cell::RefCell;
use core::time::Duration;
use std::sync::Arc;

use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource};
use embedded_hal_bus::i2c::RefCellDevice;
use sesame_chip::{processing_time, Bus, BusError, Chip, ChipConfig, ChipOptions, Nack, SimClock};
use sesame_wire::cmd::SLOT_EPHEMERAL;
use sesame_wire::resp::{product_tag, I2cParameters, KeySlotRecord, KeyTableHeader};
use sesame_wire::{
    Attribute, CommandCode, Curve, KeyGeneration, QueryTag, Reader, Request, ResponseFrame, Status,
};

const MS: Duration = Duration::from_millis(1);

/// A host driver generic over any `I2c`, fetching responses as STSELib does (protocol.md §1.3).
struct Host<I> {
    i2c: I,
    addr: u8,
    /// With realistic timing: `call` lets the command's processing time pass first.
    clock: Option<SimClock>,
}

fn host<I: I2c>(i2c: I, addr: u8) -> Host<I> {
    Host {
        i2c,
        addr,
        clock: None,
    }
}

impl<I: I2c> Host<I> {
    fn send(&mut self, req: &Request<'_>) -> Result<(), I::Error> {
        self.i2c.write(self.addr, &common::frame(req))
    }

    /// Read #1 of 5 bytes, then read #2 of 3 + LEN bytes from offset 0 again.
    fn receive(&mut self) -> Result<Vec<u8>, I::Error> {
        let mut head = [0u8; 5];
        self.i2c.read(self.addr, &mut head)?;
        let total = ResponseFrame::total_len(&head).unwrap();
        if total == 5 {
            return Ok(head.to_vec());
        }
        let mut full = vec![0u8; total];
        self.i2c.read(self.addr, &mut full)?;
        assert_eq!(full[..5], head, "read #2 must start again at byte 0");
        Ok(full)
    }

    fn call(&mut self, req: &Request<'_>) -> (Status, Vec<u8>) {
        self.send(req).unwrap();
        if let Some(clock) = &self.clock {
            clock.advance(processing_time(req.code()));
        }
        let rsp = self.receive().unwrap();
        let r = ResponseFrame::decode(&rsp, false).unwrap();
        (r.status(), r.data.to_vec())
    }
}

fn sim_bus() -> (Bus, SimClock) {
    let clock = SimClock::default();
    (Bus::with_clock(Arc::new(clock.clone())), clock)
}

/// A personalized chip answering at `addr`.
fn chip_at(addr: u8, realistic_timing: bool) -> Chip {
    let mut config = ChipConfig::new([0x0B, 0, 0, 0, 0, 0, 0, 0, addr]);
    config.i2c_address = addr;
    let (chip, storage, _) = common::chip_with(config, addr.into());
    drop(chip);
    // Reopen from the image: the fab helper builds chips without timing.
    let options = ChipOptions {
        realistic_timing,
        rng_seed: Some(addr.into()),
        ..Default::default()
    };
    Chip::open(Box::new(storage), options).unwrap()
}

fn serial_of(h: &mut Host<impl I2c>) -> Vec<u8> {
    let (st, data) = h.call(&Request::Query(QueryTag::PRODUCT_DATA));
    assert_eq!(st, Status::OK);
    let tlv = sesame_wire::resp::product_data(&data)
        .map(Result::unwrap)
        .find(|t| t.tag == product_tag::ST_NUMBER)
        .unwrap();
    tlv.value.to_vec()
}

/// Whether the ephemeral slot 0xFF holds a key (last record of Query 0x14).
fn ephemeral_present(h: &mut Host<impl I2c>) -> bool {
    let (st, data) = h.call(&Request::Query(QueryTag::PRIVATE_KEYS));
    assert_eq!(st, Status::OK);
    let mut r = Reader::new(&data);
    let header = KeyTableHeader::read(&mut r).unwrap();
    let records: Vec<_> = (0..header.count)
        .map(|_| KeySlotRecord::read(&mut r).unwrap())
        .collect();
    let eph = records.iter().find(|k| k.slot == SLOT_EPHEMERAL).unwrap();
    eph.present
}

#[test]
fn two_read_pattern_and_rereads_until_next_write() {
    let (bus, _clock) = sim_bus();
    bus.attach(chip_at(0x20, false)).unwrap();
    let mut dev = bus.device();
    let mut head = [0u8; 5];
    // Nothing to read before the first command.
    assert_eq!(
        dev.read(0x20, &mut head),
        Err(BusError::Nack(Nack::NoResponse))
    );

    let payload: Vec<u8> = (0..40).collect();
    dev.write(0x20, &common::frame(&Request::Echo(&payload)))
        .unwrap();
    dev.read(0x20, &mut head).unwrap();
    let total = ResponseFrame::total_len(&head).unwrap();
    assert_eq!(total, 3 + 40 + 2);
    let mut full = vec![0u8; total];
    dev.read(0x20, &mut full).unwrap();
    assert_eq!(full[..5], head);
    let r = ResponseFrame::decode(&full, false).unwrap();
    assert_eq!((r.status(), r.data), (Status::OK, &payload[..]));

    // Any number of re-reads of any length serve the same bytes from byte 0; past the end
    // the idle bus reads 0xFF.
    for len in [1, 3, 5, total, total + 7, 2, total] {
        let mut buf = vec![0u8; len];
        dev.read(0x20, &mut buf).unwrap();
        let n = len.min(total);
        assert_eq!(buf[..n], full[..n]);
        assert!(buf[n..].iter().all(|b| *b == 0xFF));
    }
    // A transaction of several reads is the same as separate reads.
    let (mut a, mut b) = ([0u8; 5], vec![0u8; total]);
    dev.transaction(
        0x20,
        &mut [
            embedded_hal::i2c::Operation::Read(&mut a),
            embedded_hal::i2c::Operation::Read(&mut b),
        ],
    )
    .unwrap();
    assert_eq!((a, b.clone()), (head, full.clone()));

    // The next write replaces the pending response.
    dev.write(0x20, &common::frame(&Request::Echo(&[7, 7])))
        .unwrap();
    let mut h = host(dev, 0x20);
    let next = h.receive().unwrap();
    assert_eq!(next, [0x00, 0x00, 0x04, 7, 7, next[5], next[6]]);
    assert_ne!(next[..5], full[..5]);
}

#[test]
fn several_chips_each_answer_only_at_their_address() {
    let (bus, _clock) = sim_bus();
    for addr in [0x20, 0x21, 0x35] {
        bus.attach(chip_at(addr, false)).unwrap();
    }
    // Commands to all three first, then the answers: each chip keeps its own response. One
    // device is one bus client (clones share it): the answers are its own.
    let client = bus.device();
    for addr in [0x20, 0x21, 0x35] {
        let mut h = host(client.clone(), addr);
        h.send(&Request::Echo(&[addr; 9])).unwrap();
    }
    for addr in [0x35, 0x20, 0x21] {
        let mut h = host(client.clone(), addr);
        let rsp = h.receive().unwrap();
        assert_eq!(ResponseFrame::decode(&rsp, false).unwrap().data, [addr; 9]);
        assert_eq!(serial_of(&mut h), [0x0B, 0, 0, 0, 0, 0, 0, 0, addr]);
    }

    // An empty address NACKs both directions, as an address NACK.
    let mut dev = bus.device();
    let err = dev
        .write(0x22, &common::frame(&Request::Echo(&[1])))
        .unwrap_err();
    assert_eq!(err, BusError::NoDevice);
    assert_eq!(
        err.kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    );
    assert_eq!(dev.read(0x22, &mut [0u8; 5]), Err(BusError::NoDevice));
    assert_eq!(bus.power_cycle(0x22), Err(BusError::NoDevice));

    // A second chip at a used address is refused and handed back; the first one stays.
    let refused = bus.attach(chip_at(0x21, false)).unwrap_err();
    assert_eq!(refused.address(), 0x21);
    let mut h = host(bus.device(), 0x21);
    assert_eq!(serial_of(&mut h), [0x0B, 0, 0, 0, 0, 0, 0, 0, 0x21]);
}

#[test]
fn realistic_timing_nacks_until_the_processing_time_has_passed() {
    let (bus, clock) = sim_bus();
    bus.attach(chip_at(0x20, true)).unwrap();
    let mut h = host(bus.device(), 0x20);
    let digest = [0x5A; 32];
    let requests = [
        Request::GenerateSignature {
            slot: 0,
            digest: &digest,
        },
        Request::Echo(&[1, 2, 3]),
        Request::Query(QueryTag::LIFE_CYCLE),
        Request::GenerateRandom {
            subject: 0,
            len: 16,
        },
        Request::Update {
            option: Default::default(),
            zone: 1,
            offset: 0,
            data: &[1; 8],
        },
        Request::Read {
            option: Default::default(),
            zone: 1,
            offset: 0,
            len: 8,
        },
    ];
    for req in &requests {
        let t = processing_time(req.code());
        h.send(req).unwrap();
        if t > Duration::ZERO {
            clock.advance(t - MS);
            assert_eq!(
                h.receive(),
                Err(BusError::Nack(Nack::Busy)),
                "{:?}",
                req.code()
            );
            // Writes are refused while busy too (STSELib retries them).
            assert_eq!(h.send(&Request::Echo(&[])), Err(BusError::Nack(Nack::Busy)));
            clock.advance(MS);
        }
        let r = h.receive().unwrap();
        assert_eq!(
            ResponseFrame::decode(&r, false).unwrap().status(),
            Status::OK
        );
    }
    // The table entry the brief names: Generate Signature takes 80 ms on an A110.
    assert_eq!(processing_time(CommandCode::GENERATE_SIGNATURE), 80 * MS);
}

#[test]
fn hibernate_wake_mode_1_wakes_on_a_write_and_loses_the_ephemeral_key() {
    let (bus, clock) = sim_bus();
    bus.attach(chip_at(0x20, true)).unwrap();
    let mut h = host(bus.device(), 0x20);
    let gen = Request::GenerateKey(KeyGeneration::Private {
        slot: SLOT_EPHEMERAL,
        usage_limit: 1,
        mode: 0,
        curve: Curve::P256,
    });
    h.send(&gen).unwrap();
    clock.advance(processing_time(CommandCode::GENERATE_KEY));
    assert_eq!(h.receive().unwrap()[0], 0x00);
    h.clock = Some(clock.clone());
    assert!(ephemeral_present(&mut h));

    h.send(&Request::Hibernate { wake: 1 }).unwrap();
    clock.advance(processing_time(CommandCode::HIBERNATE));
    // The OK answer stays readable (twice) while the chip sleeps.
    for _ in 0..2 {
        assert_eq!(h.receive().unwrap(), ResponseFrame::error(Status::OK));
    }
    // The next start condition wakes the chip but is NACKed; then 10 ms of wake-up.
    let echo = Request::Echo(&[4, 5]);
    assert_eq!(h.send(&echo), Err(BusError::Nack(Nack::Asleep)));
    assert_eq!(h.send(&echo), Err(BusError::Nack(Nack::Busy)));
    clock.advance(9 * MS);
    assert_eq!(h.send(&echo), Err(BusError::Nack(Nack::Busy)));
    clock.advance(MS);
    let (st, data) = h.call(&echo);
    assert_eq!((st, data.as_slice()), (Status::OK, &[4u8, 5][..]));
    assert!(
        !ephemeral_present(&mut h),
        "volatile state survives hibernate"
    );
}

#[test]
fn hibernate_wake_mode_2_needs_a_power_cycle() {
    let (bus, clock) = sim_bus();
    bus.attach(chip_at(0x20, true)).unwrap();
    let mut h = host(bus.device(), 0x20);
    h.send(&Request::Hibernate { wake: 2 }).unwrap();
    clock.advance(processing_time(CommandCode::HIBERNATE));
    assert_eq!(h.receive().unwrap(), ResponseFrame::error(Status::OK));
    for _ in 0..3 {
        assert_eq!(
            h.send(&Request::Echo(&[1])),
            Err(BusError::Nack(Nack::Asleep))
        );
        clock.advance(Duration::from_secs(1));
    }
    bus.power_cycle(0x20).unwrap();
    let (st, data) = h.call(&Request::Echo(&[1]));
    assert_eq!((st, data.as_slice()), (Status::OK, &[1u8][..]));
}

fn set_address(h: &mut Host<impl I2c>, new: u8) {
    let p = I2cParameters {
        address: new,
        locked: false,
        low_power: 0,
        idle_time: 0,
    };
    let (st, _) = h.call(&Request::PutAttribute(Attribute::I2cParameters(
        p.to_bytes(),
    )));
    assert_eq!(st, Status::OK);
    // Stored at once (Query shows it), effective only after reset or power-on.
    let (st, data) = h.call(&Request::Query(QueryTag::I2C_PARAMETERS));
    assert_eq!((st, data.as_slice()), (Status::OK, &p.to_bytes()[..]));
}

#[test]
fn new_i2c_address_takes_effect_after_reset_or_power_cycle() {
    let (bus, _clock) = sim_bus();
    bus.attach(chip_at(0x20, false)).unwrap();
    let mut old = host(bus.device(), 0x20);
    let mut new = host(bus.device(), 0x29);
    set_address(&mut old, 0x29);
    assert_eq!(old.call(&Request::Echo(&[1])).0, Status::OK);
    assert_eq!(new.send(&Request::Echo(&[1])), Err(BusError::NoDevice));

    // Reset moves the chip, but its (empty) answer is still read where the host wrote it,
    // at the old address; from the next write on, the chip answers only at the new one.
    old.send(&Request::Reset).unwrap();
    assert_eq!(old.receive().unwrap(), ResponseFrame::error(Status::OK));
    assert_eq!(new.call(&Request::Echo(&[2])).0, Status::OK);
    assert_eq!(old.receive(), Err(BusError::NoDevice));

    // The same through a power cycle.
    set_address(&mut new, 0x2A);
    assert_eq!(new.call(&Request::Echo(&[3])).0, Status::OK);
    bus.power_cycle(0x29).unwrap();
    assert_eq!(new.send(&Request::Echo(&[3])), Err(BusError::NoDevice));
    let mut moved = host(bus.device(), 0x2A);
    assert_eq!(moved.call(&Request::Echo(&[3])).0, Status::OK);
    assert_eq!(
        bus.chip(0x2A)
            .unwrap()
            .lock()
            .unwrap()
            .inspect()
            .i2c_address,
        0x2A
    );
}

#[test]
fn embedded_hal_bus_shares_one_device_between_two_drivers() {
    let (bus, _clock) = sim_bus();
    bus.attach(chip_at(0x20, false)).unwrap();
    bus.attach(chip_at(0x21, false)).unwrap();
    // Two drivers, each owning a RefCellDevice on the same underlying BusDevice (the
    // dev-dependency has no `std` feature, so `MutexDevice` is not available).
    let shared = RefCell::new(bus.device());
    let mut a = host(RefCellDevice::new(&shared), 0x20);
    let mut b = host(RefCellDevice::new(&shared), 0x21);
    for i in 0..50u8 {
        // Interleaved: both commands go out before either answer is fetched.
        a.send(&Request::Echo(&[0xA0, i])).unwrap();
        b.send(&Request::Echo(&[0xB0, i, i])).unwrap();
        let rb = b.receive().unwrap();
        let ra = a.receive().unwrap();
        assert_eq!(ResponseFrame::decode(&ra, false).unwrap().data, [0xA0, i]);
        assert_eq!(
            ResponseFrame::decode(&rb, false).unwrap().data,
            [0xB0, i, i]
        );
    }
    assert_eq!(serial_of(&mut a)[8], 0x20);
    assert_eq!(serial_of(&mut b)[8], 0x21);
}
