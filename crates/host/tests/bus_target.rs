//! `--bus` strings: the virtual bus and Linux I2C adapters with an optional address; what is
//! refused and why; opening an adapter that does not exist gives a clear error (CI has no I2C
//! hardware); the virtual bus opened through the same path runs the driver.
#![allow(clippy::unwrap_used)]

mod common;

use sesame_chip::server::Listener;
use sesame_host::bus::{parse_address, BusTarget, BusTargetError, StdDelay};
use sesame_host::Stsafe;

fn parse(s: &str) -> Result<BusTarget, BusTargetError> {
    s.parse()
}

#[test]
fn accepted_bus_strings() {
    let dev = |p: &str, a| BusTarget::I2cDev {
        path: p.into(),
        address: a,
    };
    assert_eq!(parse("/dev/i2c-1").unwrap(), dev("/dev/i2c-1", None));
    assert_eq!(
        parse("/dev/i2c-1:0x20").unwrap(),
        dev("/dev/i2c-1", Some(0x20))
    );
    assert_eq!(
        parse("/dev/i2c-12:0X2a").unwrap(),
        dev("/dev/i2c-12", Some(0x2A))
    );
    assert_eq!(parse("/dev/i2c-0:32").unwrap(), dev("/dev/i2c-0", Some(32)));
    assert_eq!(parse("/dev/i2c-1:0x20").unwrap().address(), Some(0x20));
    assert_eq!(
        parse("/dev/i2c-1:0x20").unwrap().to_string(),
        "/dev/i2c-1:0x20"
    );
    for s in [
        "127.0.0.1:7020",
        "localhost:1",
        "[::1]:7020",
        "unix:/tmp/bus.sock",
    ] {
        assert_eq!(parse(s).unwrap(), BusTarget::Socket(s.into()), "{s}");
        assert_eq!(parse(s).unwrap().address(), None);
    }
}

#[test]
fn refused_bus_strings_say_why() {
    use BusTargetError::*;
    assert_eq!(parse(""), Err(Empty));
    for s in [
        "/dev/i2c-",
        "/dev/i2c-x",
        "/dev/sda",
        "/dev/i2c-1a",
        "/dev/i2c-1/2",
    ] {
        assert!(matches!(parse(s), Err(NotAnI2cDevice(_))), "{s}");
    }
    // 7-bit addresses only, and not the reserved ones (0x00..=0x07, 0x78..=0x7F).
    for a in [
        "0x80", "0x7f", "0x78", "0x07", "0", "256", "-1", "", "0x", "twenty", "0x20 ",
    ] {
        let s = format!("/dev/i2c-1:{a}");
        assert!(matches!(parse(&s), Err(BadAddress(_))), "{s}");
        assert!(parse_address(a).is_err(), "{a}");
    }
    assert_eq!(parse_address("0x08"), Ok(0x08));
    assert_eq!(parse_address("0x77"), Ok(0x77));
    for s in [
        "unix:",
        "nohost",
        ":7020",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "i2c-1",
    ] {
        assert!(matches!(parse(s), Err(Unrecognized(_))), "{s}");
    }
    let msg = parse("/dev/i2c-1:0x99").unwrap_err().to_string();
    assert!(msg.contains("0x08..=0x77"), "{msg}");
}

#[test]
fn a_missing_adapter_is_a_clear_error() {
    // No such adapter on any machine: the error names it and says what to check.
    let e = parse("/dev/i2c-987:0x20").unwrap().open().unwrap_err();
    assert_eq!(e.error.kind(), std::io::ErrorKind::NotFound, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("/dev/i2c-987") && msg.contains("I2C"), "{msg}");
    // A path that is a file but not an adapter: the kernel refuses the address ioctl.
    let f = tempfile::NamedTempFile::new().unwrap();
    let not_dev = BusTarget::I2cDev {
        path: f.path().display().to_string(),
        address: Some(0x20),
    };
    let err = match not_dev.open() {
        Ok(mut bus) => {
            let mut se = Stsafe::new(&mut bus, StdDelay, 0x20);
            se.init().map(|_| ()).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    assert!(err.is_err());
    // A server that is not there.
    let dir = tempfile::tempdir().unwrap();
    let gone = format!("unix:{}", dir.path().join("none.sock").display());
    let msg = parse(&gone).unwrap().open().unwrap_err().to_string();
    assert!(msg.contains("sesame chip serve"), "{msg}");
}

#[test]
fn the_virtual_bus_through_a_bus_string() {
    let (bus, _) = common::bus();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("unix:{}", dir.path().join("bus.sock").display());
    let listener = Listener::bind(&spec).unwrap();
    std::thread::spawn(move || listener.serve(&bus));
    let any = parse(&spec).unwrap().open().unwrap();
    let mut se = Stsafe::new(any, StdDelay, 0x20);
    assert_eq!(se.init().unwrap().mask_id, [0x00, 0x46, 0x01]);
    // No chip at another address: the driver's NACK timeout after its polls, not a hang.
    let mut se = Stsafe::with_config(
        parse(&spec).unwrap().open().unwrap(),
        StdDelay,
        0x21,
        sesame_host::Config {
            retries: 2,
            ..Default::default()
        },
    );
    assert!(se.init().is_err());
}
