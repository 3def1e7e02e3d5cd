//! Power cuts after every single file-system step of every state-changing command: the sealed
//! image always opens, its content is the state before or after one whole store (never a mix),
//! one-way counters never go up and the host C-MAC counter never goes down.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{frame, options, Session, CIPHER_KEY, MAC_KEY, PASSWORD};
use sesame_chip::{
    unseal, Chip, ChipConfig, CurveName, Fab, FileStorage, ImageError, SealKey, Sealed, SimFs,
    Storage, StorageError,
};
use sesame_wire::{Attribute, Curve, KeyGeneration, Request, ZoneOption};

const IMG: &str = "/nvm/chip.img";

/// Records every plaintext image stored, to know which states a cut may leave.
struct Recorder<S> {
    inner: S,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl<S: Storage> Storage for Recorder<S> {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.load()
    }
    fn store(&mut self, image: &[u8]) -> Result<(), StorageError> {
        self.inner.store(image)?;
        self.log.lock().unwrap().push(image.to_vec());
        Ok(())
    }
}

fn storage(fs: &SimFs, key: &SealKey) -> Sealed<FileStorage<SimFs>> {
    Sealed::new(FileStorage::with_fs(IMG, fs.clone()), key.clone())
}

fn plain(fs: &SimFs, key: &SealKey) -> Vec<u8> {
    storage(fs, key).load().unwrap().unwrap()
}

fn base_disk(key: &SealKey) -> SimFs {
    let fs = SimFs::new();
    let mut fab = Fab::new(
        ChipConfig::new([7; 9]),
        Box::new(storage(&fs, key)),
        options(1),
    )
    .unwrap();
    fab.generate_key(0, CurveName::P256).unwrap();
    fab.set_host_keys(MAC_KEY, CIPHER_KEY).unwrap();
    fab.set_password(PASSWORD, 3).unwrap();
    fab.finish().unwrap();
    fs.fork()
}

fn plain_op(req: Request<'static>) -> impl Fn(&mut Chip) {
    move |c: &mut Chip| {
        c.transceive(&frame(&req));
    }
}

/// A named state-changing operation.
type Op = (&'static str, Box<dyn Fn(&mut Chip)>);

fn ops() -> Vec<Op> {
    vec![
        (
            "update",
            Box::new(plain_op(Request::Update {
                option: ZoneOption::NONE,
                zone: 1,
                offset: 3,
                data: b"new data",
            })),
        ),
        (
            "decrement",
            Box::new(plain_op(Request::Decrement {
                option: ZoneOption::NONE,
                zone: 4,
                offset: 0,
                amount: 7,
                data: b"use",
            })),
        ),
        (
            "generate_key",
            Box::new(plain_op(Request::GenerateKey(KeyGeneration::Private {
                slot: 1,
                usage_limit: 0xFFFF,
                mode: 0,
                curve: Curve::P256,
            }))),
        ),
        (
            "put_attribute",
            Box::new(plain_op(Request::PutAttribute(Attribute::I2cParameters([
                0x42, 0,
            ])))),
        ),
        (
            "verify_password_wrong",
            Box::new(plain_op(Request::VerifyPassword(&[0; 16]))),
        ),
        (
            "cmac_update",
            Box::new(|c: &mut Chip| {
                let s = Session::new(0);
                let f = s.frame(
                    &Request::Update {
                        option: ZoneOption::NONE,
                        zone: 2,
                        offset: 0,
                        data: b"mac'd",
                    },
                    false,
                );
                c.transceive(&f);
            }),
        ),
        (
            "cmac_echo",
            Box::new(|c: &mut Chip| {
                let s = Session::new(0);
                let f = s.frame(&Request::Echo(&[1, 2, 3]), false);
                c.transceive(&f);
            }),
        ),
    ]
}

fn open(
    fs: &SimFs,
    key: &SealKey,
    log: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
) -> Result<Chip, ImageError> {
    match log {
        Some(log) => Chip::open(
            Box::new(Recorder {
                inner: storage(fs, key),
                log,
            }),
            options(9),
        ),
        None => Chip::open(Box::new(storage(fs, key)), options(9)),
    }
}

#[test]
fn every_cut_point_leaves_old_or_new_state() {
    let key = SealKey::generate();
    let base = base_disk(&key);
    let base_plain = plain(&base, &key);
    let base_chip = open(&base, &key, None).unwrap().inspect();
    let mut total_cuts = 0;
    let mut report = Vec::new();
    for (name, op) in ops() {
        // Reference run: the states each successful store produces.
        let log = Arc::new(Mutex::new(vec![base_plain.clone()]));
        let fs = base.fork();
        let mut chip = open(&fs, &key, Some(log.clone())).unwrap();
        op(&mut chip);
        let allowed = log.lock().unwrap().clone();
        assert!(allowed.len() >= 2, "{name}: the operation changed nothing");
        let mut cuts = 0;
        for k in 0.. {
            let fs = base.fork();
            let mut chip = open(&fs, &key, None).unwrap();
            fs.cut_at(Some(k));
            op(&mut chip);
            if !fs.was_cut() {
                break;
            }
            cuts += 1;
            for disk in fs.crash_states() {
                let mut chip = open(&disk, &key, None).unwrap_or_else(|e| {
                    panic!("{name}: cut after step {k}: image does not open: {e}")
                });
                let state = plain(&disk, &key);
                assert!(
                    allowed.contains(&state),
                    "{name}: cut after step {k} left a mixed state"
                );
                let now = chip.inspect();
                for (z, z0) in now.zones.iter().zip(&base_chip.zones) {
                    assert!(z.counter <= z0.counter, "{name}: a one-way counter went up");
                }
                assert!(
                    now.host_counter >= base_chip.host_counter,
                    "{name}: C-MAC counter went down"
                );
                // The recovered chip keeps working.
                op(&mut chip);
            }
        }
        report.push(format!(
            "{name}: {cuts} cut points, {} states",
            allowed.len()
        ));
        total_cuts += cuts;
    }
    println!("{}", report.join("\n"));
    println!("total cut points enumerated: {total_cuts}");
    // 4 steps per store; the C-MAC'd Update stores twice (counter, then zone), Echo once.
    assert_eq!(total_cuts, 4 * 6 + 8);
}

#[test]
fn damaged_images_are_refused_never_reset() {
    let key = SealKey::generate();
    let base = base_disk(&key);
    let sealed = FileStorage::with_fs(IMG, base.clone())
        .load()
        .unwrap()
        .unwrap();
    let try_bytes = |bytes: Vec<u8>, key: &SealKey| {
        let fs = SimFs::new();
        FileStorage::with_fs(IMG, fs.clone()).store(&bytes).unwrap();
        open(&fs, key, None)
    };
    for cut in [0, 8, 20, sealed.len() / 2, sealed.len() - 1] {
        let r = try_bytes(sealed[..cut].to_vec(), &key);
        assert!(
            matches!(r, Err(ImageError::Corrupted(_))),
            "truncated to {cut}"
        );
    }
    for i in [0, 9, 25, sealed.len() - 1] {
        let mut b = sealed.clone();
        b[i] ^= 0x40;
        assert!(
            matches!(try_bytes(b, &key), Err(ImageError::Corrupted(_))),
            "flip at {i}"
        );
    }
    let e = try_bytes(sealed.clone(), &SealKey::generate()).unwrap_err();
    assert!(e.to_string().contains("wrong key"), "{e}");
    assert!(try_bytes(sealed, &key).is_ok());
    assert!(matches!(
        open(&SimFs::new(), &key, None),
        Err(ImageError::Missing)
    ));
    let plain = unseal(
        &key,
        &FileStorage::with_fs(IMG, base).load().unwrap().unwrap(),
        None,
    )
    .unwrap();
    // An unsealed image is refused by a sealed store: no silent downgrade.
    assert!(matches!(
        try_bytes(plain, &key),
        Err(ImageError::Corrupted(_))
    ));
}
