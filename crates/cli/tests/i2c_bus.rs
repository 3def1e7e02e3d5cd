//! `sesame device --bus` with a Linux I2C adapter: the address in the bus string, its
//! validation, a conflict with `--address`, and a clear error for an adapter that does not
//! exist (CI has no I2C hardware).
#![allow(clippy::unwrap_used)]

mod common;

use common::{fails, sesame, text};

#[test]
fn i2c_bus_strings_are_checked_and_missing_adapters_explained() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let o = fails(
        sesame(&["device", "info", "--bus", "/dev/i2c-987:0x20"], d),
        "cannot open /dev/i2c-987",
    );
    assert!(text(&o).contains("is I2C enabled"), "{}", text(&o));
    // Address validation happens while parsing arguments: a usage error (2).
    for bad in [
        "/dev/i2c-1:0x99",
        "/dev/i2c-1:0x03",
        "/dev/i2c-x",
        "/dev/sda",
        "nohost",
    ] {
        let o = sesame(&["device", "info", "--bus", bad], d);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains("--bus"), "{}", text(&o));
    }
    fails(
        sesame(
            &[
                "device",
                "info",
                "--bus",
                "/dev/i2c-1:0x20",
                "--address",
                "0x21",
            ],
            d,
        ),
        "give one",
    );
}
