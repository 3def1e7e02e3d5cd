//! The driver: bus, command table, host session, and the one exchange every command goes
//! through.

use core::ops::Range;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_wire::frame::MAC_LEN;
use sesame_wire::resp::{self, product_tag, ChipModel, HostKeySlot};
use sesame_wire::secure::Key128;
use sesame_wire::{CommandCode, CommandFrame, Header, QueryTag, Reader, Request, ResponseFrame};
use sesame_wire::{Status, Writer};

use crate::session::Session;
use crate::table::{CommandTable, Protection};
use crate::transport::{Config, Link, IO_BUF};
use crate::{Error, ProductInfo};

/// Payload buffer: the largest payload (502 bytes with a C-MAC) padded for encryption.
const PAYLOAD_BUF: usize = 512;

/// An STSAFE-A110 on an I2C bus.
///
/// Holds the bus, a delay, the chip's address, the command authorization table loaded by
/// [`Stsafe::init`], the host session opened by [`Stsafe::open_session`], and two 512-byte
/// frame buffers (about 1.1 KB in all). Every command is sent plain, with C-MAC + R-MAC, or
/// encrypted, as the table says (protocol.md §6.6).
pub struct Stsafe<I2C, D> {
    pub(crate) link: Link<I2C, D>,
    table: CommandTable,
    session: Option<Session>,
    payload: [u8; PAYLOAD_BUF],
    pub(crate) io: [u8; IO_BUF],
}

impl<I2C, D> core::fmt::Debug for Stsafe<I2C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stsafe")
            .field("address", &self.link.address)
            .field("config", &self.link.config)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl<I2C: I2c, D: DelayNs> Stsafe<I2C, D> {
    /// A driver for the chip at 7-bit `address` (0x20 by default on an A110), with the default
    /// [`Config`]. Nothing is sent until the first call.
    pub fn new(i2c: I2C, delay: D, address: u8) -> Self {
        Self::with_config(i2c, delay, address, Config::default())
    }

    /// A driver with explicit polling parameters.
    pub fn with_config(i2c: I2C, delay: D, address: u8, config: Config) -> Self {
        Self {
            link: Link {
                i2c,
                delay,
                address,
                config,
            },
            table: CommandTable::default(),
            session: None,
            payload: [0; PAYLOAD_BUF],
            io: [0; IO_BUF],
        }
    }

    /// Gives the bus and the delay back. An open session is closed (its keys are wiped).
    pub fn release(self) -> (I2C, D) {
        (self.link.i2c, self.link.delay)
    }

    /// The 7-bit address the driver talks to.
    pub fn address(&self) -> u8 {
        self.link.address
    }

    /// Talks to another address from now on (after Put Attribute 0x0A and a reset).
    pub fn set_address(&mut self, address: u8) {
        self.link.address = address;
    }

    /// The polling parameters.
    pub fn config(&self) -> Config {
        self.link.config
    }

    /// Changes the polling parameters.
    pub fn set_config(&mut self, config: Config) {
        self.link.config = config;
    }

    /// What `stse_init` does: waits the boot time, reads the product data (Query 0x11) and
    /// checks that the mask id names an A110, then loads the command authorization table
    /// (Query 0x24) into the driver. Both queries are sent plain. (STSELib sends Query 0x24
    /// twice, the first time only to size its buffer; the driver's buffer is fixed, so it sends
    /// it once.)
    pub fn init(&mut self) -> Result<ProductInfo, Error<I2C::Error>> {
        self.link.delay.delay_ms(self.link.config.boot_wait_ms);
        self.table = CommandTable::default();
        let info = self.query_product_data()?;
        if info.model != Some(ChipModel::A110) {
            return Err(Error::NotA110);
        }
        let range = self.transfer(
            &Request::Query(QueryTag::COMMAND_AUTHORIZATION),
            Protection::Plain,
        )?;
        self.table = CommandTable::parse(&self.io[range])?;
        Ok(info)
    }

    /// Query 0x11: product data. The first TLV must be the 3-byte mask id.
    pub fn query_product_data(&mut self) -> Result<ProductInfo, Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::PRODUCT_DATA))?;
        self.product_info(range)
    }

    /// Decodes the product data at `range` of the frame buffer.
    pub(crate) fn product_info<E>(&self, range: Range<usize>) -> Result<ProductInfo, Error<E>> {
        let mut tlvs = resp::product_data(&self.io[range]);
        let mask_id: [u8; 3] = match tlvs.next() {
            Some(Ok(t)) if t.tag == product_tag::MASK_ID => {
                t.value.try_into().map_err(|_| Error::NotA110)?
            }
            Some(Err(e)) => return Err(Error::Decode(e)),
            _ => return Err(Error::NotA110),
        };
        let mut info = ProductInfo {
            mask_id,
            model: resp::chip_model(&mask_id),
            st_number: None,
            io_buffer_size: None,
            atomicity_buffer_size: None,
            nvm_size: None,
        };
        let be16 = |v: &[u8]| <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes);
        for t in tlvs {
            let t = t?;
            match t.tag {
                product_tag::ST_NUMBER => info.st_number = t.value.try_into().ok(),
                product_tag::IO_BUFFER_SIZE => info.io_buffer_size = be16(t.value),
                product_tag::ATOMICITY_BUFFER_SIZE => info.atomicity_buffer_size = be16(t.value),
                product_tag::NVM_SIZE => info.nvm_size = be16(t.value),
                _ => {}
            }
        }
        Ok(info)
    }

    /// How `code` is sent, per the table loaded by [`Stsafe::init`].
    pub fn protection(&self, code: CommandCode) -> Protection {
        self.table.protection(code)
    }

    /// Opens the host session (`stsafea_open_host_session`): reads the host key slot
    /// (Query 0x17, plain) and keeps its counter. Fails with [`Error::NoSession`] when the chip
    /// has no host keys. The keys are the ones provisioned with Put Attribute 0x17.
    pub fn open_session(
        &mut self,
        mac_key: &Key128,
        cipher_key: &Key128,
    ) -> Result<(), Error<I2C::Error>> {
        self.session = None;
        let counter = self.host_counter()?;
        self.start_session(mac_key, cipher_key, counter);
        Ok(())
    }

    /// Reads the chip's counter again and puts the open session back in step, e.g. after a
    /// response was lost ([`Error::NackTimeout`]). The driver also does this by itself before
    /// the next protected command whenever an exchange ended without a chip status.
    pub fn reopen_session(&mut self) -> Result<(), Error<I2C::Error>> {
        if self.session.is_none() {
            return Err(Error::NoSession);
        }
        let counter = self.host_counter()?;
        self.resync_session(counter);
        Ok(())
    }

    /// Closes the session and wipes its keys.
    pub fn close_session(&mut self) {
        self.session = None;
    }

    /// The counter the next C-MAC will use, when a session is open.
    pub fn session_counter(&self) -> Option<u32> {
        self.session.as_ref().map(Session::counter)
    }

    fn host_counter(&mut self) -> Result<u32, Error<I2C::Error>> {
        let range = self.transfer(&Request::Query(QueryTag::HOST_KEY), Protection::Plain)?;
        self.host_counter_at(range)
    }

    /// The C-MAC counter in a Query 0x17 answer at `range`.
    pub(crate) fn host_counter_at<E>(&self, range: Range<usize>) -> Result<u32, Error<E>> {
        let mut r = Reader::new(&self.io[range]);
        let slot = HostKeySlot::read(&mut r)?;
        r.finish()?;
        if !slot.present {
            return Err(Error::NoSession);
        }
        Ok(slot.counter)
    }

    pub(crate) fn replace_session_keys(&mut self, mac: &Key128, cipher: &Key128) {
        if let Some(s) = self.session.as_mut() {
            s.replace_keys(mac, cipher);
        }
    }

    /// Starts a session with keys and the counter read from the chip.
    pub(crate) fn start_session(&mut self, mac: &Key128, cipher: &Key128, counter: u32) {
        self.session = Some(Session::new(mac, cipher, counter));
    }

    /// Puts an open session back in step with the chip's counter.
    pub(crate) fn resync_session(&mut self, counter: u32) {
        if let Some(s) = self.session.as_mut() {
            s.resync(counter);
        }
    }

    /// True when a protected exchange must first read the counter again.
    pub(crate) fn needs_resync(&self, prot: Protection) -> bool {
        prot.is_protected() && self.session.as_ref().is_some_and(Session::is_out_of_step)
    }

    pub(crate) fn set_table(&mut self, table: CommandTable) {
        self.table = table;
    }

    pub(crate) fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// Sends `req` with the protection the table gives its command; returns where its
    /// (plaintext) data lies in the frame buffer.
    pub(crate) fn call(&mut self, req: &Request<'_>) -> Result<Range<usize>, Error<I2C::Error>> {
        let p = self.table.protection(req.code());
        self.transfer(req, p)
    }

    /// Like [`Stsafe::call`], with at least C-MAC + R-MAC when `mac`.
    pub(crate) fn call_mac(
        &mut self,
        req: &Request<'_>,
        mac: bool,
    ) -> Result<Range<usize>, Error<I2C::Error>> {
        let p = self.table.protection(req.code());
        self.transfer(req, if mac { p.at_least_mac() } else { p })
    }

    /// Decodes the answer at `range` with `f`, which must read it whole.
    pub(crate) fn decode<T>(
        &self,
        range: Range<usize>,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, sesame_wire::Error>,
    ) -> Result<T, Error<I2C::Error>> {
        let mut r = Reader::new(&self.io[range]);
        let v = f(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Writes the answer's data into `out`; returns its length.
    pub(crate) fn copy_out(
        &self,
        range: Range<usize>,
        out: &mut [u8],
    ) -> Result<usize, Error<I2C::Error>> {
        let data = &self.io[range];
        let mut w = Writer::new(out);
        w.put(data);
        w.finish().map_err(|_| Error::BufferTooSmall)
    }

    /// One command/response exchange with the given protection (protocol.md §1, §6).
    pub(crate) fn transfer(
        &mut self,
        req: &Request<'_>,
        prot: Protection,
    ) -> Result<Range<usize>, Error<I2C::Error>> {
        if prot.is_protected() && self.session.is_none() {
            return Err(Error::NoSession);
        }
        if self.needs_resync(prot) {
            self.reopen_session()?;
        }
        let pending = self.begin_transfer(req, prot)?;
        self.link.send(&self.io[..pending.frame_len])?;
        let total = self.link.receive(&mut self.io)?;
        self.finish_transfer(pending, total)
    }

    /// The first half of an exchange, without I/O: the command frame, sealed as `prot` says,
    /// is in the frame buffer (`frame_len` bytes). The session must be in step
    /// ([`Stsafe::needs_resync`]).
    pub(crate) fn begin_transfer<E>(
        &mut self,
        req: &Request<'_>,
        prot: Protection,
    ) -> Result<Pending, Error<E>> {
        let code = req.code();
        let plain_len = req
            .encode(&mut self.payload)
            .map_err(|_| Error::RequestTooLarge)?;
        let (header, len, cmac): (Header, usize, Option<[u8; MAC_LEN]>) =
            match (prot.is_protected(), self.session.as_mut()) {
                (false, _) => (Header::plain(code), plain_len, None),
                (true, Some(s)) => {
                    let header = Header::protected(code);
                    let (len, mac) = s.seal(
                        header,
                        &mut self.payload,
                        plain_len,
                        prot.encrypts_command(),
                    )?;
                    (header, len, Some(mac))
                }
                (true, None) => return Err(Error::NoSession),
            };
        let frame = CommandFrame {
            header,
            payload: &self.payload[..len],
            cmac,
        };
        let frame_len = frame
            .encode(&mut self.io)
            .map_err(|_| Error::RequestTooLarge)?;
        if let (true, Some(s)) = (prot.is_protected(), self.session.as_mut()) {
            // From here until a chip status is seen, the chip may or may not have taken the
            // C-MAC: the session is out of step.
            s.begin();
        }
        Ok(Pending {
            header,
            len,
            prot,
            frame_len,
        })
    }

    /// The second half, without I/O: checks the response frame (`total` bytes in the frame
    /// buffer), settles the session, checks the R-MAC and decrypts; returns where the data is.
    pub(crate) fn finish_transfer<E>(
        &mut self,
        p: Pending,
        total: usize,
    ) -> Result<Range<usize>, Error<E>> {
        let Pending {
            header, len, prot, ..
        } = p;
        let (r, body_len) = match ResponseFrame::decode(&self.io[..total], false) {
            Ok(f) => (f.r, f.data.len()),
            Err(_) => return Err(Error::Crc),
        };
        let status = Status(r & 0x1F);
        let Some(session) = self.session.as_mut().filter(|_| prot.is_protected()) else {
            return if status == Status::OK {
                Ok(3..3 + body_len)
            } else {
                Err(Error::Status(status))
            };
        };
        let n = session.settle(status);
        if status != Status::OK {
            return Err(Error::Status(status));
        }
        let Some(data_len) = body_len.checked_sub(MAC_LEN) else {
            return Err(Error::RmacMismatch);
        };
        let (data, rmac) = self.io[3..3 + body_len].split_at(data_len);
        if !session.check_rmac(n, header, &self.payload[..len], r, data, rmac) {
            return Err(Error::RmacMismatch);
        }
        // A response without data is not encrypted (§6.5).
        let plain = if prot.encrypts_response() && data_len > 0 {
            session.decrypt_response(n, &mut self.io[3..3 + data_len])?
        } else {
            data_len
        };
        Ok(3..3 + plain)
    }
}

/// An exchange between its two halves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    header: Header,
    len: usize,
    prot: Protection,
    /// Length of the command frame in the frame buffer.
    pub frame_len: usize,
}
