//! Whatever the bus answers — random bytes, well-formed frames with random contents, NACKs,
//! bus errors — the driver returns an error or a value, never panics, and never hands out data
//! from a frame whose CRC is wrong. Certificate parsing is fuzzed the same way.
#![allow(clippy::unwrap_used)]

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use sesame_host::{Curve, EccPublicKey, Error, NoDelay, Stsafe, ZoneAccess};
use sesame_wire::crc16::crc16_digest;

/// What the fake chip answers to one command.
#[derive(Clone, Debug)]
enum Answer {
    /// The transaction fails with this bus error kind (0 NACK, 1 other).
    Fail(u8),
    /// These raw bytes, served from offset 0 to every read.
    Raw(Vec<u8>),
    /// A frame with a correct CRC: R, data (LEN is computed unless `len` overrides it).
    Frame {
        r: u8,
        data: Vec<u8>,
        len: Option<u16>,
    },
}

fn encode(a: &Answer) -> Vec<u8> {
    match a {
        Answer::Fail(_) => Vec::new(),
        Answer::Raw(b) => b.clone(),
        Answer::Frame { r, data, len } => {
            let mut d = crc16_digest();
            d.update(&[*r]);
            d.update(data);
            let mut out = vec![*r];
            out.extend_from_slice(&len.unwrap_or(data.len() as u16 + 2).to_be_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(&d.finalize().to_be_bytes());
            out
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct FakeError(ErrorKind);

impl embedded_hal::i2c::Error for FakeError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

struct Fake {
    answers: Vec<Answer>,
    next: usize,
    current: Answer,
}

impl ErrorType for Fake {
    type Error = FakeError;
}

impl I2c for Fake {
    fn transaction(&mut self, _: u8, ops: &mut [Operation<'_>]) -> Result<(), FakeError> {
        for op in ops {
            let fail = match &self.current {
                Answer::Fail(0) => Err(FakeError(ErrorKind::NoAcknowledge(
                    NoAcknowledgeSource::Address,
                ))),
                Answer::Fail(_) => Err(FakeError(ErrorKind::Bus)),
                _ => Ok(()),
            };
            match op {
                Operation::Write(_) => {
                    self.current = self
                        .answers
                        .get(self.next)
                        .cloned()
                        .unwrap_or(Answer::Fail(0));
                    self.next += 1;
                }
                Operation::Read(buf) => {
                    fail?;
                    let bytes = encode(&self.current);
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = bytes.get(i).copied().unwrap_or(0xFF);
                    }
                }
            }
        }
        Ok(())
    }
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        1 => (0u8..2).prop_map(Answer::Fail),
        2 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Answer::Raw),
        6 => (
            prop_oneof![Just(0u8), any::<u8>()],
            proptest::collection::vec(any::<u8>(), 0..120),
            proptest::option::weighted(0.1, any::<u16>()),
        )
            .prop_map(|(r, data, len)| Answer::Frame { r, data, len }),
        // A host key slot answer, so that sessions open and protected paths run.
        1 => any::<[u8; 3]>().prop_map(|c| Answer::Frame {
            r: 0,
            data: vec![1, c[0], c[1], c[2]],
            len: None
        }),
    ]
}

fn run(answers: Vec<Answer>) {
    let fake = Fake {
        answers,
        next: 0,
        current: Answer::Fail(0),
    };
    let config = sesame_host::Config {
        retries: 2,
        ..Default::default()
    };
    let mut se = Stsafe::with_config(fake, NoDelay, 0x20, config);
    let mut buf = [0u8; 300];
    let _ = se.init();
    let _ = se.open_session(&[1; 16], &[2; 16]);
    let _ = se.echo(&[1, 2, 3], &mut buf);
    let _ = se.generate_random(&mut buf[..40]);
    let _ = se.read_with(1, 0, &mut buf[..16], ZoneAccess::MAC);
    let _ = se.read_counter(4, 0, &mut buf[..4]);
    let _ = se.decrement(4, 0, 1, &[]);
    let _ = se.query_data_partition().map(|r| r.count());
    let _ = se.query_private_keys().map(|(_, r)| r.count());
    let _ = se.query_envelope_keys().map(|r| r.count());
    let _ = se.query_command_authorization().map(|(_, r)| r.count());
    let _ = se.query_product_data();
    let _ = se.query_i2c_parameters();
    let _ = se.generate_signature(0, &[0; 32]);
    let _ = se.generate_private_key(1, Curve::P384, 1);
    let key = EccPublicKey::from_xy(Curve::P256, &[4; 64]).unwrap();
    let _ = se.establish_key(0, &key);
    let _ = se.verify_signature(&key, &[0; 64], &[0; 32]);
    let _ = se.wrap(0, &[0; 16], &mut buf);
    let _ = se.unwrap(0, &[0; 24], &mut buf);
    let _ = se.read_certificate(0, &mut buf);
    let _ = se.verify_password(&[0; 16]);
    let _ = se.lock(&[0; 16]);
    let _ = se.reopen_session();
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([0; 32]);
    let _ = se.authenticate_peer(&[0x30, 0], &Default::default(), &mut rng, &mut buf);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_answers_never_panic(answers in proptest::collection::vec(answer(), 0..40)) {
        run(answers);
    }

    #[test]
    fn arbitrary_der_never_panics(
        der in proptest::collection::vec(any::<u8>(), 0..400),
        cut in 0usize..400,
    ) {
        let _ = sesame_host::auth::verify_chain(&der, &der, Some(0));
        let _ = sesame_host::auth::verify_chain(&der[..cut.min(der.len())], &der, None);
    }
}

#[test]
fn a_frame_with_a_bad_crc_is_never_data() {
    // Echo answered by a frame whose last CRC byte is wrong.
    let mut raw = encode(&Answer::Frame {
        r: 0,
        data: vec![1, 2, 3],
        len: None,
    });
    *raw.last_mut().unwrap() ^= 1;
    let fake = Fake {
        answers: vec![Answer::Raw(raw)],
        next: 0,
        current: Answer::Fail(0),
    };
    let mut se = Stsafe::new(fake, NoDelay, 0x20);
    let mut out = [0u8; 3];
    assert_eq!(se.echo(&[1, 2, 3], &mut out), Err(Error::Crc));
    assert_eq!(out, [0; 3]);
}
