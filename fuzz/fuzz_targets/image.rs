//! Arbitrary bytes loaded as a chip image: a clear error or a working chip, never a panic.
//! Both the plain image decoder and the sealed one (with a fixed key) are exercised; a decoded
//! chip must also answer a command and persist again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_chip::{Chip, ChipOptions, ImageError, MemStorage, SealKey, Sealed};

fuzz_target!(|data: &[u8]| {
    let storage = MemStorage::new();
    storage.set_image(Some(data.to_vec()));
    match Chip::open(Box::new(storage), ChipOptions { rng_seed: Some(1), ..Default::default() }) {
        Ok(mut chip) => {
            // Echo 01 02 03 (protocol.md §1.7) gets a well-formed answer: the echo itself, or a
            // refusal the image's own policy dictates (e.g. Echo set to "never").
            let rsp = chip.transceive(&[0x00, 0x01, 0x02, 0x03, 0xA7, 0x29]);
            let r = sesame_wire::ResponseFrame::decode(&rsp, false).expect("well-formed response");
            if r.status() == sesame_wire::Status::OK {
                assert_eq!(r.data, [1, 2, 3]);
            }
            let _ = chip.inspect();
        }
        Err(ImageError::Corrupted(_) | ImageError::UnsupportedVersion(_)) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
    let sealed = MemStorage::new();
    sealed.set_image(Some(data.to_vec()));
    let key = SealKey::from_bytes([7; 32]);
    match Chip::open(Box::new(Sealed::new(sealed, key)), ChipOptions::default()) {
        Err(ImageError::Corrupted(_)) => {}
        other => panic!("random bytes passed the seal: {:?}", other.map(|c| c.serial())),
    }
});
