//! The agent finds its chip from a bus string: a Linux I2C adapter (`/dev/i2c-N[:ADDR]`) or
//! the virtual bus; refusals name the problem (CI has no I2C hardware).
#![allow(clippy::unwrap_used)]

use sesame_agent::{open_chip, AgentError};

fn message(r: Result<impl Sized, AgentError>) -> String {
    match r {
        Err(AgentError::Chip(m)) => m,
        Err(e) => panic!("not a chip error: {e}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn bus_strings_for_the_agent() {
    let m = message(open_chip("/dev/i2c-987", None));
    assert!(m.contains("cannot open /dev/i2c-987"), "{m}");
    let m = message(open_chip("/dev/i2c-1:0x80", None));
    assert!(m.contains("0x08..=0x77"), "{m}");
    let m = message(open_chip("/dev/i2c-1:0x20", Some(0x21)));
    assert!(m.contains("give one"), "{m}");
    let m = message(open_chip("unix:/nonexistent/bus.sock", None));
    assert!(m.contains("sesame chip serve"), "{m}");
}
