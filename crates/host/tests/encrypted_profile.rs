//! The encrypting profile (`sesame_chip::encrypted_command_policy`, `--profile encrypted`): the
//! driver learns from the chip's table which commands are encrypted and takes every encrypted
//! path — response encryption (Generate Random, Read), command encryption (Update) — with no
//! plaintext of those on the bus.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Recorder, Spec, Tx, CIPHER_KEY, MAC_KEY};
use sesame_chip::{encrypted_command_policy, Bus};
use sesame_host::{Error, NoDelay, Protection, Stsafe};
use sesame_wire::CommandCode;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_encrypted_path_of_the_profile() {
    let (chip, _) = common::chip(&Spec {
        policy: encrypted_command_policy(),
        ..Spec::default()
    });
    let bus = Bus::new();
    bus.attach(chip).unwrap();
    let rec = Recorder::new(bus.device());
    let mut se = Stsafe::new(rec.clone(), NoDelay, 0x20);
    se.init().unwrap();

    // The table as the chip reports it (what `chip inspect` shows).
    for (code, cmd, rsp) in [
        (CommandCode::GENERATE_RANDOM, false, true),
        (CommandCode::READ, false, true),
        (CommandCode::UPDATE, true, false),
    ] {
        let want = Protection::Encrypted {
            command: cmd,
            response: rsp,
        };
        assert_eq!(se.protection(code), want, "{code:?}");
    }
    assert!(!se.protection(CommandCode::ECHO).is_protected());

    // Without a session the encrypted commands cannot be sent at all.
    let mut out = [0u8; 16];
    assert_eq!(se.generate_random(&mut out), Err(Error::NoSession));
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();

    // Response encryption: random bytes.
    rec.take();
    let mut random = [0u8; 32];
    se.generate_random(&mut random).unwrap();
    assert_ne!(random, [0u8; 32]);
    let seen: Vec<Vec<u8>> = rec
        .take()
        .into_iter()
        .filter_map(|t| match t {
            Tx::Read(_, b) => Some(b),
            _ => None,
        })
        .collect();
    assert!(
        seen.iter().all(|r| !contains(r, &random[..8])),
        "random bytes in the clear"
    );

    // Command encryption: Update's data never crosses the bus in the clear.
    let secret = *b"zone two secret!";
    se.update(2, 0, &secret).unwrap();
    let writes = rec.writes();
    assert!(
        writes.iter().all(|w| !contains(w, &secret)),
        "update data in the clear"
    );
    rec.take();

    // Response encryption: Read answers the zone's data encrypted; the driver decrypts it.
    let mut back = [0u8; 16];
    se.read(2, 0, &mut back).unwrap();
    assert_eq!(back, secret);
    let log = rec.take();
    assert!(
        log.iter()
            .all(|t| !matches!(t, Tx::Read(_, b) if contains(b, &secret))),
        "read data in the clear"
    );
    // A zone read with data of any length, and the certificate, through the encrypted Read.
    let mut pattern = [0u8; 100];
    se.read(1, 3, &mut pattern).unwrap();
    assert!(pattern.iter().enumerate().all(|(i, &b)| b == (i + 3) as u8));
}
