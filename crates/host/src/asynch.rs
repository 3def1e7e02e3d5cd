//! [`AsyncStsafe`] (feature `async`): the driver over `embedded-hal-async`, for Embassy and
//! other async executors. It is the same driver: command encoding, the command table, the host
//! secure channel, R-MAC checks and response decoding are the blocking driver's own code, run
//! without I/O between the two halves of each exchange; only the bus transactions and the
//! waits are awaited. It offers the commands a device needs at run time (product data and
//! command table, random, signature, ECDH, key generation, zone reads and updates, certificate,
//! host session).
//!
//! `tests/async_driver.rs` runs it on an async adapter over sesame's in-process bus, with
//! simulated time for the chip's NACK polling.

use core::convert::Infallible;
use core::ops::Range;

use embedded_hal::i2c::{ErrorKind, ErrorType};
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::i2c::I2c;
use sesame_wire::secure::Key128;
use sesame_wire::{
    CommandCode, Curve, KeyGeneration, PublicKey, QueryTag, Reader, Request, ResponseFrame,
    Signature, ZoneOption,
};

use crate::driver::Pending;
use crate::table::{CommandTable, Protection};
use crate::transport::{Config, IO_BUF};
use crate::{EccPublicKey, EccSignature, Error, ProductInfo, SharedSecret, Stsafe};

/// The blocking driver's state with no bus: it encodes and decodes, never transfers.
struct Detached;

impl ErrorType for Detached {
    type Error = Infallible;
}

impl embedded_hal::i2c::I2c for Detached {
    fn transaction(
        &mut self,
        _: u8,
        _: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_hal::delay::DelayNs for Detached {
    fn delay_ns(&mut self, _: u32) {}
}

/// An STSAFE-A110 on an async I2C bus.
pub struct AsyncStsafe<I2C, D> {
    i2c: I2C,
    delay: D,
    core: Stsafe<Detached, Detached>,
}

impl<I2C, D> core::fmt::Debug for AsyncStsafe<I2C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AsyncStsafe")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

fn is_nack<E: embedded_hal::i2c::Error>(e: &E) -> bool {
    matches!(e.kind(), ErrorKind::NoAcknowledge(_))
}

impl<I2C: I2c, D: DelayNs> AsyncStsafe<I2C, D> {
    /// A driver for the chip at 7-bit `address`, with the default [`Config`].
    pub fn new(i2c: I2C, delay: D, address: u8) -> Self {
        Self::with_config(i2c, delay, address, Config::default())
    }

    /// A driver with explicit polling parameters.
    pub fn with_config(i2c: I2C, delay: D, address: u8, config: Config) -> Self {
        Self {
            i2c,
            delay,
            core: Stsafe::with_config(Detached, Detached, address, config),
        }
    }

    /// Gives the bus and the delay back.
    pub fn release(self) -> (I2C, D) {
        (self.i2c, self.delay)
    }

    /// The counter the next C-MAC will use, when a session is open.
    pub fn session_counter(&self) -> Option<u32> {
        self.core.session_counter()
    }

    /// Runs `op` until it is acknowledged, at most `config.retries` times.
    async fn poll(&mut self, write: Option<usize>, read: usize) -> Result<(), Error<I2C::Error>> {
        let config = self.core.config();
        let address = self.core.address();
        let tries = config.retries.max(1);
        for attempt in 1..=tries {
            let r = match write {
                Some(n) => self.i2c.write(address, &self.core.io[..n]).await,
                None => self.i2c.read(address, &mut self.core.io[..read]).await,
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) if is_nack(&e) => {
                    if attempt < tries {
                        self.delay.delay_ms(config.interval_ms).await;
                    }
                }
                Err(e) => return Err(Error::Bus(e)),
            }
        }
        Err(Error::NackTimeout)
    }

    /// STSELib's read pattern (5 bytes, then the whole frame), as the blocking transport.
    async fn receive(&mut self) -> Result<usize, Error<I2C::Error>> {
        let mut rereads = self.core.config().crc_rereads;
        loop {
            self.poll(None, 5).await?;
            let len = u16::from_be_bytes([self.core.io[1], self.core.io[2]]);
            let total = 3 + len as usize;
            let result = if len < 2 || total > IO_BUF {
                Err(Error::Crc)
            } else {
                if total > 5 {
                    self.poll(None, total).await?;
                }
                let same = u16::from_be_bytes([self.core.io[1], self.core.io[2]]) == len;
                match ResponseFrame::decode(&self.core.io[..total], false) {
                    Ok(_) if same => Ok(total),
                    _ => Err(Error::Crc),
                }
            };
            match result {
                Err(Error::Crc) if rereads > 0 => rereads -= 1,
                other => return other,
            }
        }
    }

    async fn transfer(
        &mut self,
        req: &Request<'_>,
        prot: Protection,
    ) -> Result<Range<usize>, Error<I2C::Error>> {
        if prot.is_protected() && self.core.session_counter().is_none() {
            return Err(Error::NoSession);
        }
        if self.core.needs_resync(prot) {
            let range = self
                .exchange(&Request::Query(QueryTag::HOST_KEY), Protection::Plain)
                .await?;
            let counter = self.core.host_counter_at::<I2C::Error>(range)?;
            self.core.resync_session(counter);
        }
        self.exchange(req, prot).await
    }

    async fn exchange(
        &mut self,
        req: &Request<'_>,
        prot: Protection,
    ) -> Result<Range<usize>, Error<I2C::Error>> {
        let pending: Pending = self.core.begin_transfer::<I2C::Error>(req, prot)?;
        self.poll(Some(pending.frame_len), 0).await?;
        self.delay.delay_ms(self.core.config().first_wait_ms).await;
        let total = self.receive().await?;
        self.core.finish_transfer::<I2C::Error>(pending, total)
    }

    async fn call(&mut self, req: &Request<'_>) -> Result<Range<usize>, Error<I2C::Error>> {
        let p = self.core.protection(req.code());
        self.transfer(req, p).await
    }

    fn read_whole<T>(
        &self,
        range: Range<usize>,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, sesame_wire::Error>,
    ) -> Result<T, Error<I2C::Error>> {
        let mut r = Reader::new(&self.core.io[range]);
        let v = f(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Product data (must name an A110) and the command authorization table, as
    /// [`Stsafe::init`].
    pub async fn init(&mut self) -> Result<ProductInfo, Error<I2C::Error>> {
        self.delay.delay_ms(self.core.config().boot_wait_ms).await;
        self.core.set_table(CommandTable::default());
        let range = self.call(&Request::Query(QueryTag::PRODUCT_DATA)).await?;
        let info = self.core.product_info::<I2C::Error>(range)?;
        if info.model != Some(sesame_wire::resp::ChipModel::A110) {
            return Err(Error::NotA110);
        }
        let q = Request::Query(QueryTag::COMMAND_AUTHORIZATION);
        let range = self.transfer(&q, Protection::Plain).await?;
        let table = CommandTable::parse(&self.core.io[range])?;
        self.core.set_table(table);
        Ok(info)
    }

    /// Opens the host session (reads the C-MAC counter), as [`Stsafe::open_session`].
    pub async fn open_session(
        &mut self,
        mac_key: &Key128,
        cipher_key: &Key128,
    ) -> Result<(), Error<I2C::Error>> {
        self.core.close_session();
        let q = Request::Query(QueryTag::HOST_KEY);
        let range = self.transfer(&q, Protection::Plain).await?;
        let counter = self.core.host_counter_at::<I2C::Error>(range)?;
        self.core.start_session(mac_key, cipher_key, counter);
        Ok(())
    }

    /// Random bytes from the chip (one command per 255 bytes).
    pub async fn generate_random(&mut self, out: &mut [u8]) -> Result<(), Error<I2C::Error>> {
        for chunk in out.chunks_mut(255) {
            let range = self
                .call(&Request::GenerateRandom {
                    subject: 0,
                    len: chunk.len() as u8,
                })
                .await?;
            if range.len() != chunk.len() {
                return Err(Error::UnexpectedLength);
            }
            chunk.copy_from_slice(&self.core.io[range]);
        }
        Ok(())
    }

    /// Generate Signature: the chip signs `digest` (32 or 48 bytes) with the key in `slot`.
    pub async fn generate_signature(
        &mut self,
        slot: u8,
        digest: &[u8],
    ) -> Result<EccSignature, Error<I2C::Error>> {
        let range = self
            .call(&Request::GenerateSignature { slot, digest })
            .await?;
        let sig = self.read_whole(range, |r| {
            let s = Signature::read(r)?;
            Ok(EccSignature::from_wire(&s))
        })?;
        sig.ok_or(Error::UnexpectedLength)
    }

    /// Generate Key: a private key in `slot` (1, or 0xFF) on `curve`; returns its public key.
    pub async fn generate_private_key(
        &mut self,
        slot: u8,
        curve: Curve,
        usage_limit: u16,
    ) -> Result<EccPublicKey, Error<I2C::Error>> {
        let req = Request::GenerateKey(KeyGeneration::Private {
            slot,
            usage_limit,
            mode: 0,
            curve,
        });
        let range = self.call(&req).await?;
        let pk = self.read_whole(range, |r| {
            let pk = PublicKey::read(r)?;
            Ok(EccPublicKey::from_wire(curve, &pk))
        })?;
        pk.ok_or(Error::UnexpectedLength)
    }

    /// Establish Key: ECDH between the key in `slot` and `peer`.
    pub async fn establish_key(
        &mut self,
        slot: u8,
        peer: &EccPublicKey,
    ) -> Result<SharedSecret, Error<I2C::Error>> {
        let req = Request::EstablishKey {
            slot,
            peer: peer.wire(),
        };
        let range = self.call(&req).await?;
        let n = peer.curve().coordinate_len();
        let x = self.read_whole(range, |r| {
            let x = r.len16_prefixed()?;
            Ok((x.len() == n)
                .then(|| SharedSecret::from_slice(x))
                .flatten())
        })?;
        x.ok_or(Error::UnexpectedLength)
    }

    /// Read: `out.len()` bytes of `zone` from `offset` (at most one frame).
    pub async fn read(
        &mut self,
        zone: u8,
        offset: u16,
        out: &mut [u8],
    ) -> Result<(), Error<I2C::Error>> {
        let len = u16::try_from(out.len()).map_err(|_| Error::InvalidInput)?;
        let req = Request::Read {
            option: ZoneOption::NONE,
            zone,
            offset,
            len,
        };
        let range = self.call(&req).await?;
        if range.len() != out.len() {
            return Err(Error::UnexpectedLength);
        }
        out.copy_from_slice(&self.core.io[range]);
        Ok(())
    }

    /// Update: writes `data` to `zone` at `offset` (at most one frame).
    pub async fn update(
        &mut self,
        zone: u8,
        offset: u16,
        data: &[u8],
    ) -> Result<(), Error<I2C::Error>> {
        let req = Request::Update {
            option: ZoneOption::NONE,
            zone,
            offset,
            data,
        };
        let range = self.call(&req).await?;
        if !range.is_empty() {
            return Err(Error::UnexpectedLength);
        }
        Ok(())
    }

    /// The DER certificate in `zone` (its size from the BE16 at offset 2, plus 4), read in
    /// 253-byte chunks like the blocking driver; returns its length.
    pub async fn read_certificate(
        &mut self,
        zone: u8,
        out: &mut [u8],
    ) -> Result<usize, Error<I2C::Error>> {
        let mut head = [0u8; 4];
        self.read(zone, 0, &mut head).await?;
        if head[0] != 0x30 || head[1] != 0x82 {
            return Err(Error::UnexpectedLength);
        }
        let size = 4 + usize::from(u16::from_be_bytes([head[2], head[3]]));
        let dst = out.get_mut(..size).ok_or(Error::BufferTooSmall)?;
        let mut offset = 0usize;
        for chunk in dst.chunks_mut(crate::CHUNK) {
            let at = u16::try_from(offset).map_err(|_| Error::InvalidInput)?;
            self.read(zone, at, chunk).await?;
            offset += chunk.len();
        }
        Ok(size)
    }

    /// How `code` is sent, per the loaded command table.
    pub fn protection(&self, code: CommandCode) -> Protection {
        self.core.protection(code)
    }
}
