//! The `embedded-hal-async` driver against the blocking one's chip: init, random, signatures
//! that verify, ECDH, zones and the certificate, a host session with Generate Signature under
//! C-MAC (counters in step), and the chip's processing time polled on simulated time. The
//! async bus and delay wrap sesame's in-process bus; a minimal executor polls the futures.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{SimDelay, Spec, CIPHER_KEY, MAC_KEY};
use embedded_hal::i2c::{ErrorType, I2c as _, Operation};
use p256_nostd::ecdsa::signature::hazmat::PrehashVerifier;
use sesame_chip::{Bus, BusDevice, SimClock};
use sesame_host::asynch::AsyncStsafe;
use sesame_host::{Curve, EccPublicKey, Error};
use sesame_wire::CommandCode;

/// Polls `f` to completion (the futures here are ready at once; a pending one is polled again).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The in-process bus as an async I2C bus.
struct AsyncBus(BusDevice);

impl ErrorType for AsyncBus {
    type Error = <BusDevice as ErrorType>::Error;
}

impl embedded_hal_async::i2c::I2c for AsyncBus {
    async fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.0.transaction(address, operations)
    }
}

/// Simulated time as an async delay.
struct AsyncDelay(SimDelay);

impl embedded_hal_async::delay::DelayNs for AsyncDelay {
    async fn delay_ns(&mut self, ns: u32) {
        embedded_hal::delay::DelayNs::delay_ns(&mut self.0, ns);
    }
}

fn driver(bus: &Bus, delay: SimDelay) -> AsyncStsafe<AsyncBus, AsyncDelay> {
    AsyncStsafe::new(AsyncBus(bus.device()), AsyncDelay(delay), 0x20)
}

#[test]
fn async_driver_runs_the_device_commands() {
    let (bus, slot0) = common::bus();
    block_on(async {
        let mut se = driver(&bus, SimDelay::default());
        let info = se.init().await.unwrap();
        assert_eq!(info.mask_id, [0x00, 0x46, 0x01]);
        let (mut a, mut b) = ([0u8; 300], [0u8; 300]);
        se.generate_random(&mut a).await.unwrap();
        se.generate_random(&mut b).await.unwrap();
        assert_ne!(a, b);
        let digest = [0x33u8; 32];
        let sig = se.generate_signature(0, &digest).await.unwrap();
        let vk = p256_nostd::ecdsa::VerifyingKey::from_sec1_bytes(&slot0.to_sec1()).unwrap();
        let s = p256_nostd::ecdsa::Signature::from_slice(sig.rs()).unwrap();
        vk.verify_prehash(&digest, &s).unwrap();
        // ECDH with a fresh slot-1 key against a known peer.
        let pk1 = se
            .generate_private_key(1, Curve::P256, 0xFFFF)
            .await
            .unwrap();
        let peer = p256_nostd::SecretKey::from_slice(&[0x21; 32]).unwrap();
        let peer_xy = peer.public_key().to_sec1_bytes()[1..].to_vec();
        let peer_pk = EccPublicKey::from_xy(Curve::P256, &peer_xy).unwrap();
        let secret = se.establish_key(1, &peer_pk).await.unwrap();
        let chip1 = p256_nostd::PublicKey::from_sec1_bytes(&[&[4u8][..], pk1.xy()].concat());
        let expect =
            p256_nostd::ecdh::diffie_hellman(peer.to_nonzero_scalar(), chip1.unwrap().as_affine());
        assert_eq!(secret.as_bytes(), expect.raw_secret_bytes().as_slice());
        // Zones: write, read back; the zone-0 placeholder certificate header is read.
        se.update(2, 4, b"async").await.unwrap();
        let mut back = [0u8; 5];
        se.read(2, 4, &mut back).await.unwrap();
        assert_eq!(&back, b"async");
        let mut cert = [0u8; 1024];
        assert_eq!(se.read_certificate(0, &mut cert).await.unwrap(), 260);
        // The chip's refusal comes back as its status.
        let e = se.generate_signature(0, &[1; 20]).await.unwrap_err();
        assert!(matches!(e, Error::Status(_)), "{e:?}");
    });
}

#[test]
fn async_driver_keeps_the_host_session_in_step() {
    let (bus, slot0) = common::bus_with(&Spec {
        policy: common::policy(&[CommandCode::GENERATE_SIGNATURE], &[CommandCode::READ]),
        ..Spec::default()
    });
    block_on(async {
        let mut se = driver(&bus, SimDelay::default());
        se.init().await.unwrap();
        // Protected without a session: refused before the bus.
        assert_eq!(
            se.generate_signature(0, &[1; 32]).await.unwrap_err(),
            Error::NoSession
        );
        se.open_session(&MAC_KEY, &CIPHER_KEY).await.unwrap();
        let start = se.session_counter().unwrap();
        for i in 0..5u8 {
            let digest = [i; 32];
            let sig = se.generate_signature(0, &digest).await.unwrap();
            let vk = p256_nostd::ecdsa::VerifyingKey::from_sec1_bytes(&slot0.to_sec1()).unwrap();
            let s = p256_nostd::ecdsa::Signature::from_slice(sig.rs()).unwrap();
            vk.verify_prehash(&digest, &s).unwrap();
            // Read is encrypted both ways by this policy.
            let mut b = [0u8; 4];
            se.read(1, 0, &mut b).await.unwrap();
            assert_eq!(b, [0, 1, 2, 3]);
        }
        assert_eq!(se.session_counter().unwrap() - start, 10);
    });
}

#[test]
fn async_driver_polls_a_busy_chip_on_simulated_time() {
    let (chip, _) = common::chip(&Spec {
        realistic_timing: true,
        ..Spec::default()
    });
    let clock = SimClock::default();
    let bus = Bus::with_clock(Arc::new(clock.clone()));
    bus.attach(chip).unwrap();
    let delay = SimDelay::new(clock);
    block_on(async {
        let mut se = driver(&bus, delay.clone());
        se.init().await.unwrap();
        let before = delay.total();
        se.generate_signature(0, &[7u8; 32]).await.unwrap();
        let waited = delay.total() - before;
        // Generate Signature takes 80 ms on an A110: polled every 10 ms until then.
        assert!(waited >= Duration::from_millis(80), "{waited:?}");
        assert!(waited <= Duration::from_millis(91), "{waited:?}");
    });
}
