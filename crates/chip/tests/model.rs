//! Model fuzzing: random command sequences run against the chip and against a trivial model of
//! zones and counters must agree, with power cuts at random file-system steps (the chip then
//! restarts from what the simulated disk holds, and the model accepts "before" or "after" for
//! the interrupted command only). Arbitrary bytes loaded as an image give a clear error.
#![allow(clippy::unwrap_used)]

mod common;

use common::{frame, options};
use proptest::prelude::*;
use sesame_chip::{
    Chip, ChipConfig, Fab, FileStorage, ImageError, MemStorage, SealKey, Sealed, SimFs, ZoneSpec,
};
use sesame_wire::{Request, ResponseFrame, Status, ZoneOption};

const IMG: &str = "/nvm/model.img";

#[derive(Clone, Debug, PartialEq)]
struct ModelZone {
    counter: Option<u32>,
    writable: bool,
    data: Vec<u8>,
}

fn layout() -> Vec<ZoneSpec> {
    vec![
        ZoneSpec::read_only(40),
        ZoneSpec::plain(100),
        ZoneSpec::counter(16, 50),
        ZoneSpec::plain(8),
        ZoneSpec::counter(4, 3),
    ]
}

fn model() -> Vec<ModelZone> {
    layout()
        .iter()
        .map(|z| ModelZone {
            counter: z.counter,
            writable: z.update_ac == 0,
            data: vec![0; z.size as usize],
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Cmd {
    Update {
        zone: u8,
        offset: u16,
        data: Vec<u8>,
    },
    Decrement {
        zone: u8,
        offset: u16,
        amount: u32,
        data: Vec<u8>,
    },
    Read {
        zone: u8,
        offset: u16,
        len: u16,
    },
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        (0u8..6, 0u16..110, prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(zone, offset, data)| Cmd::Update { zone, offset, data }),
        (
            0u8..6,
            0u16..20,
            prop_oneof![Just(0u32), 1u32..20, Just(u32::MAX)],
            prop::collection::vec(any::<u8>(), 0..6)
        )
            .prop_map(|(zone, offset, amount, data)| Cmd::Decrement {
                zone,
                offset,
                amount,
                data
            }),
        (0u8..6, 0u16..110, 0u16..40).prop_map(|(zone, offset, len)| Cmd::Read {
            zone,
            offset,
            len
        }),
    ]
}

/// The model's answer and its next state.
fn expect(m: &[ModelZone], c: &Cmd) -> (Status, Vec<u8>, Vec<ModelZone>) {
    let mut next = m.to_vec();
    let fail = |s| (s, vec![], m.to_vec());
    let (zone, write) = match c {
        Cmd::Update { zone, .. } | Cmd::Decrement { zone, .. } => (*zone, true),
        Cmd::Read { zone, .. } => (*zone, false),
    };
    let Some(z) = next.get_mut(zone as usize) else {
        return fail(Status::ENTRY_NOT_FOUND);
    };
    if write && !z.writable {
        return fail(Status::ACCESS_CONDITION_NOT_SATISFIED);
    }
    let in_range = |off: u16, len: usize| off as usize + len <= z.data.len();
    match c {
        Cmd::Read { offset, len, .. } => {
            if !in_range(*offset, *len as usize) {
                return fail(Status::BOUNDARY_EXCEEDED);
            }
            let mut out = z
                .counter
                .map(|c| c.to_be_bytes().to_vec())
                .unwrap_or_default();
            out.extend_from_slice(&z.data[*offset as usize..(*offset + *len) as usize]);
            (Status::OK, out, next)
        }
        Cmd::Update { offset, data, .. } => {
            if z.counter.is_some() {
                return fail(Status::WRONG_ZONE_TYPE);
            }
            if !in_range(*offset, data.len()) {
                return fail(Status::BOUNDARY_EXCEEDED);
            }
            z.data[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
            (Status::OK, vec![], next)
        }
        Cmd::Decrement {
            offset,
            amount,
            data,
            ..
        } => {
            let Some(counter) = z.counter else {
                return fail(Status::WRONG_ZONE_TYPE);
            };
            if *amount == 0 {
                return fail(Status::VALUE_OUT_OF_RANGE);
            }
            if counter == 0 || *amount > counter {
                return fail(Status::COUNTER_LIMIT_EXCEEDED);
            }
            if !in_range(*offset, data.len()) {
                return fail(Status::BOUNDARY_EXCEEDED);
            }
            z.counter = Some(counter - amount);
            z.data[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
            (Status::OK, (counter - amount).to_be_bytes().to_vec(), next)
        }
    }
}

fn request(c: &Cmd) -> Request<'_> {
    match c {
        Cmd::Update { zone, offset, data } => Request::Update {
            option: ZoneOption::NONE,
            zone: *zone,
            offset: *offset,
            data,
        },
        Cmd::Decrement {
            zone,
            offset,
            amount,
            data,
        } => Request::Decrement {
            option: ZoneOption::NONE,
            zone: *zone,
            offset: *offset,
            amount: *amount,
            data,
        },
        Cmd::Read { zone, offset, len } => Request::Read {
            option: ZoneOption::NONE,
            zone: *zone,
            offset: *offset,
            len: *len,
        },
    }
}

fn send(chip: &mut Chip, c: &Cmd) -> (Status, Vec<u8>) {
    let rsp = chip.transceive(&frame(&request(c)));
    let r = ResponseFrame::decode(&rsp, false).unwrap();
    (r.status(), r.data.to_vec())
}

/// The chip's whole partition, read back through commands.
fn observe(chip: &mut Chip) -> Vec<ModelZone> {
    let mut m = model();
    for (i, z) in m.iter_mut().enumerate() {
        let (st, data) = send(
            chip,
            &Cmd::Read {
                zone: i as u8,
                offset: 0,
                len: z.data.len() as u16,
            },
        );
        assert_eq!(st, Status::OK);
        let body = match z.counter {
            Some(_) => {
                z.counter = Some(u32::from_be_bytes(data[..4].try_into().unwrap()));
                &data[4..]
            }
            None => &data[..],
        };
        z.data.copy_from_slice(body);
    }
    m
}

fn open(fs: &SimFs, key: &SealKey) -> Chip {
    Chip::open(
        Box::new(Sealed::new(
            FileStorage::with_fs(IMG, fs.clone()),
            key.clone(),
        )),
        options(5),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn chip_agrees_with_model_across_power_cuts(
        cmds in prop::collection::vec((cmd(), prop::option::weighted(0.35, 0u64..5), any::<prop::sample::Index>()), 1..40)
    ) {
        let key = SealKey::generate();
        let mut fs = SimFs::new();
        let mut config = ChipConfig::new([9; 9]);
        config.zones = layout();
        let fab = Fab::new(config, Box::new(Sealed::new(FileStorage::with_fs(IMG, fs.clone()), key.clone())), options(5)).unwrap();
        drop(fab.finish().unwrap());
        fs = fs.fork();
        let mut chip = open(&fs, &key);
        let mut m = model();
        for (c, cut, pick) in &cmds {
            let (want_st, want_data, after) = expect(&m, c);
            if let Some(extra) = cut {
                fs.cut_at(Some(fs.steps() + extra));
            }
            let (st, data) = send(&mut chip, c);
            if fs.was_cut() {
                // Power failed inside this command: restart from one possible disk.
                let states = fs.crash_states();
                fs = states[pick.index(states.len())].clone();
                chip = open(&fs, &key);
                let seen = observe(&mut chip);
                prop_assert!(seen == m || seen == after, "interrupted {:?} left a mixed state", c);
                m = seen;
            } else {
                fs.cut_at(None);
                prop_assert_eq!((st, &data), (want_st, &want_data), "command {:?}", c);
                m = after;
            }
        }
        prop_assert_eq!(observe(&mut chip), m);
    }

    #[test]
    fn arbitrary_image_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let storage = MemStorage::new();
        storage.set_image(Some(bytes.clone()));
        let r = Chip::open(Box::new(storage), options(1));
        prop_assert!(matches!(r, Err(ImageError::Corrupted(_)) | Err(ImageError::UnsupportedVersion(_))));
        // Through the seal too (the way real images are stored).
        let fs = SimFs::new();
        sesame_chip::Storage::store(&mut FileStorage::with_fs(IMG, fs.clone()), &bytes).unwrap();
        let r = Chip::open(Box::new(Sealed::new(FileStorage::with_fs(IMG, fs), SealKey::generate())), options(1));
        prop_assert!(matches!(r, Err(ImageError::Corrupted(_))));
    }

    #[test]
    fn mutated_plain_images_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        // Start from a real image so mutations reach deep into the decoder.
        let storage = MemStorage::new();
        let mut config = ChipConfig::new([1; 9]);
        config.zones = layout();
        Fab::new(config, Box::new(storage.clone()), options(1)).unwrap().finish().unwrap();
        let mut img = storage.image().unwrap();
        for (i, v) in &flips {
            let at = i.index(img.len());
            img[at] ^= v | 1;
        }
        storage.set_image(Some(img));
        // Either it opens (the change hit a value that stays valid) and works, or it is refused.
        match Chip::open(Box::new(storage), options(1)) {
            Ok(mut chip) => { send(&mut chip, &Cmd::Read { zone: 0, offset: 0, len: 1 }); }
            Err(e) => prop_assert!(matches!(e, ImageError::Corrupted(_) | ImageError::UnsupportedVersion(_))),
        }
    }
}
