//! Image files: one owner at a time (a lock beside the image), and the file's mode kept across
//! writes (0600 for a new image).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use sesame_chip::{Chip, ChipConfig, ChipOptions, Fab, FileStorage, ImageLock, SealKey, Sealed};
use sesame_wire::{Request, ResponseFrame, Status};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn new_image(path: &std::path::Path, key: &SealKey) {
    let storage = Sealed::new(FileStorage::exclusive(path).unwrap(), key.clone());
    let fab = Fab::new(
        ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0, 9]),
        Box::new(storage),
        ChipOptions::default(),
    )
    .unwrap();
    fab.finish().unwrap();
}

#[test]
fn an_image_has_one_owner_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.chip");
    let key = SealKey::generate();
    new_image(&path, &key);
    let open = |path: &std::path::Path| {
        FileStorage::exclusive(path).map(|s| {
            Chip::open(
                Box::new(Sealed::new(s, key.clone())),
                ChipOptions::default(),
            )
        })
    };
    let first = open(&path).unwrap().unwrap();
    // flock locks conflict between two opens in one process too.
    let e = open(&path).unwrap_err();
    let lock = ImageLock::path_for(&path);
    assert_eq!(
        e.message,
        format!(
            "chip image {} is in use: another process (process {}) holds its lock {}",
            path.display(),
            std::process::id(),
            lock.display()
        )
    );
    drop(first);
    let again = open(&path).unwrap().unwrap();
    assert_eq!(again.serial(), [2, 0, 0, 0, 0, 0, 0, 0, 9]);
}

#[test]
fn a_write_keeps_the_image_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.chip");
    let key = SealKey::generate();
    new_image(&path, &key);
    assert_eq!(mode(&path), 0o600, "a new image is its owner's only");
    for wanted in [0o640, 0o600, 0o400] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted)).unwrap();
        let storage = Sealed::new(FileStorage::exclusive(&path).unwrap(), key.clone());
        let mut chip = Chip::open(Box::new(storage), ChipOptions::default()).unwrap();
        // Update zone 1 writes the image.
        let rsp = chip.transceive(&common::frame(&Request::Update {
            option: Default::default(),
            zone: 1,
            offset: 0,
            data: &[wanted as u8],
        }));
        assert_eq!(
            ResponseFrame::decode(&rsp, false).unwrap().status(),
            Status::OK
        );
        assert_eq!(mode(&path), wanted);
    }
}

/// The seal names its chip: an image opened as another chip's is refused, the serial in the
/// clear cannot be edited, and the storage will not write another chip's image.
#[test]
fn an_image_is_bound_to_its_chip() {
    use sesame_chip::{seal, sealed_serial, unseal, ImageError, MemStorage, Storage};
    let key = SealKey::generate();
    let make = |last: u8| {
        let mem = MemStorage::new();
        let fab = Fab::new(
            ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0, last]),
            Box::new(Sealed::new(mem.clone(), key.clone())),
            ChipOptions::default(),
        )
        .unwrap();
        fab.finish().unwrap();
        mem.image().unwrap()
    };
    let (a, b) = (make(0xA), make(0xB));
    let (sa, sb) = ([2, 0, 0, 0, 0, 0, 0, 0, 0xA], [2, 0, 0, 0, 0, 0, 0, 0, 0xB]);
    assert_eq!(sealed_serial(&a), Some(sa));

    // A's image where B's should be.
    let mem = MemStorage::new();
    mem.set_image(Some(a.clone()));
    let e = Chip::open(
        Box::new(Sealed::for_chip(mem.clone(), key.clone(), sb)),
        ChipOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        ImageError::WrongChip(
            "this is chip 02000000000000000A's image, not chip 02000000000000000B's \
             (a swapped or copied image)"
                .into()
        )
    );
    assert!(e.to_string().starts_with("refused chip image: "));
    // The same image as A's opens.
    Chip::open(
        Box::new(Sealed::for_chip(mem, key.clone(), sa)),
        ChipOptions::default(),
    )
    .unwrap();

    // Editing the serial in the clear breaks the seal.
    let mut edited = a.clone();
    edited[16] = 0xB;
    assert_eq!(sealed_serial(&edited), Some(sb));
    let e = unseal(&key, &edited, Some(&sb)).unwrap_err();
    assert!(e.message.contains("fails authentication"), "{e}");

    // A seal that names B around A's plain image: refused after opening.
    let plain_a = unseal(&key, &a, None).unwrap();
    let forged = seal(&key, &sb, &plain_a);
    let e = unseal(&key, &forged, Some(&sb)).unwrap_err();
    assert!(e.message.contains("not chip 02000000000000000B's"), "{e}");

    // A storage bound to B does not write A's image.
    let mut store = Sealed::for_chip(MemStorage::new(), key.clone(), sb);
    assert!(store.store(&plain_a).is_err());
    let _ = b;
}

/// A write the disk refuses: the host gets 0x05 and the old state stays; the bus logs which chip,
/// which command and the OS error.
#[test]
fn storage_failures_are_logged() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("images");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("c.chip");
    let key = SealKey::generate();
    new_image(&path, &key);
    let chip = Chip::open(
        Box::new(Sealed::new(FileStorage::new(&path), key)),
        ChipOptions::default(),
    )
    .unwrap();
    let bus = sesame_chip::Bus::new();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    bus.set_log(Some(Arc::new(move |l: &str| {
        sink.lock().unwrap().push(l.into())
    })));
    bus.attach(chip).unwrap();
    // The directory goes away under the server: the temporary file cannot be created.
    std::fs::remove_dir_all(&sub).unwrap();
    let update = common::frame(&Request::Update {
        option: Default::default(),
        zone: 1,
        offset: 0,
        data: &[1, 2, 3],
    });
    bus.write(0x20, &update).unwrap();
    let mut rsp = [0u8; 5];
    bus.read(0x20, &mut rsp).unwrap();
    assert_eq!(
        ResponseFrame::decode(&rsp, false).unwrap().status(),
        Status(0x05)
    );
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with("chip 020000000000000009: UPDATE not stored"),
        "{line}"
    );
    assert!(
        line.contains("c.chip.tmp") && line.contains("(os error 2)"),
        "{line}"
    );
}

/// An image sealed by an earlier version (`SESAMES1`, magic-only associated data) still opens,
/// and its next write seals it bound to its chip.
#[test]
fn a_legacy_sealed_image_opens_and_is_resealed() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use sesame_chip::{sealed_serial, unseal, MemStorage};
    let raw = [5u8; 32];
    let key = SealKey::from_bytes(raw);
    let mem = MemStorage::new();
    let fab = Fab::new(
        ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0, 7]),
        Box::new(Sealed::new(mem.clone(), key.clone())),
        ChipOptions::default(),
    )
    .unwrap();
    fab.finish().unwrap();
    let plain = unseal(&key, &mem.image().unwrap(), None).unwrap();
    // The old format, made by hand.
    let nonce = [9u8; 12];
    let ct = aes_gcm::Aes256Gcm::new(&raw.into())
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: &plain,
                aad: b"SESAMES1",
            },
        )
        .unwrap();
    let legacy = [b"SESAMES1".as_slice(), &nonce, &ct].concat();
    mem.set_image(Some(legacy));
    let serial = [2, 0, 0, 0, 0, 0, 0, 0, 7];
    let mut chip = Chip::open(
        Box::new(Sealed::for_chip(mem.clone(), key.clone(), serial)),
        ChipOptions::default(),
    )
    .unwrap();
    let rsp = chip.transceive(&common::frame(&Request::Update {
        option: Default::default(),
        zone: 1,
        offset: 0,
        data: &[1],
    }));
    assert_eq!(
        ResponseFrame::decode(&rsp, false).unwrap().status(),
        Status::OK
    );
    assert_eq!(sealed_serial(&mem.image().unwrap()), Some(serial));
}
