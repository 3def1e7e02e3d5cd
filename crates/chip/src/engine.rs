//! The command engine: one I2C write in, one response out (sans-IO: no bus, no clock reads).
//!
//! Order of checks for a frame, chosen so that the host's C-MAC counter stays in step with the
//! chip's (protocol.md §6.1: the host adds 1 after every protected exchange unless the status is
//! 0x16 or 0x01):
//! 1. size and CRC (0x06, 0x01);
//! 2. C-MAC, before anything else that can fail (0x07, 0x0A, 0x09, 0x16); on success the counter
//!    is incremented and persisted even if the command then fails;
//! 3. command code (0x04), life cycle (0x0F), command access condition (0x1E, 0x11);
//! 4. command decryption (0x18), payload decoding (0x02, 0x03);
//! 5. the command itself, on a snapshot: any error restores NVM and volatile state, and NVM is
//!    persisted before a success is answered (0x05 if the storage fails).

use sesame_wire::frame::{MAX_RESPONSE_FRAME, MAX_WRITE};
use sesame_wire::resp::{command_ac, ENC_COMMAND, ENC_RESPONSE};
use sesame_wire::secure::{self, Direction, COUNTER_MAX};
use sesame_wire::{
    CommandCode, CommandFrame, Error as WireError, Header, Request, ResponseFrame, Status,
};
use subtle::ConstantTimeEq;

use crate::keys::PrivateKey;
use crate::rng::ChipRng;
use crate::state::Nvm;
use crate::{image, Storage};

/// Volatile state: lost on reset, hibernate and power cycle.
#[derive(Debug, Default, Clone)]
pub(crate) struct Volatile {
    pub ephemeral: Option<PrivateKey>,
    pub password_ok: bool,
    pub hibernate: Option<u8>,
    pub reset: bool,
    /// Why the last command's state could not be stored, for the adapter to report.
    pub storage_failure: Option<String>,
}

/// What a command handler works on.
pub(crate) struct Ctx<'a> {
    pub nvm: &'a mut Nvm,
    pub vol: &'a mut Volatile,
    pub rng: &'a mut ChipRng,
    /// A valid host C-MAC came with this command.
    pub host_ok: bool,
    /// The handler changed NVM; the engine persists it.
    pub dirty: bool,
    /// Response data (plaintext).
    pub out: Vec<u8>,
}

pub(crate) type CmdResult = Result<(), Status>;

/// Maps a payload decoding failure to its status (the one place this mapping lives).
pub(crate) fn decode_status(e: WireError) -> Status {
    match e {
        WireError::UnsupportedCommand { .. } => Status::COMMAND_CODE_NOT_SUPPORTED,
        WireError::UnknownTag { .. }
        | WireError::UnknownCurve { .. }
        | WireError::InvalidValue { .. } => Status::VALUE_OUT_OF_RANGE,
        WireError::TooLong { .. } | WireError::BufferTooSmall => Status::BUFFER_LENGTH_EXCEEDED,
        WireError::Padding => Status::COMMAND_DECRYPTION_ERROR,
        WireError::Crc { .. } => Status::COMMUNICATION_ERROR,
        _ => Status::INCONSISTENT_COMMAND_DATA,
    }
}

/// An open host secure-channel exchange: the keys and counter captured when the C-MAC checked out.
struct Exchange {
    n: u32,
    mac: [u8; 16],
    cipher: [u8; 16],
}

/// The outcome of one frame, for the adapter: the response bytes and side effects on the bus.
pub(crate) struct Outcome {
    pub response: Vec<u8>,
    pub code: CommandCode,
}

pub(crate) struct Engine<'a> {
    pub nvm: &'a mut Nvm,
    pub vol: &'a mut Volatile,
    pub rng: &'a mut ChipRng,
    pub storage: &'a mut dyn Storage,
}

fn error_frame(status: Status) -> Vec<u8> {
    ResponseFrame::error(status).to_vec()
}

impl Engine<'_> {
    fn persist(&mut self) -> Result<(), Status> {
        let bytes = image::encode(self.nvm);
        self.storage.store(&bytes).map_err(|e| {
            self.vol.storage_failure = Some(e.message);
            Status::UNEXPECTED_ERROR
        })
    }

    /// Processes one command frame and returns the response frame.
    pub fn process(&mut self, bytes: &[u8]) -> Outcome {
        let code = bytes
            .first()
            .map(|h| Header(*h).code())
            .unwrap_or(CommandCode::ECHO);
        let response = match self.process_inner(bytes) {
            Ok(r) => r,
            Err(s) => error_frame(s),
        };
        Outcome { response, code }
    }

    fn process_inner(&mut self, bytes: &[u8]) -> Result<Vec<u8>, Status> {
        if bytes.len() > MAX_WRITE {
            return Err(Status::BUFFER_LENGTH_EXCEEDED);
        }
        let frame = match CommandFrame::decode(bytes) {
            Ok(f) => f,
            // A C-MAC'd frame too short to hold its C-MAC answers "invalid C-MAC": the host
            // then leaves its counter alone, as the chip does.
            Err(WireError::Truncated { .. }) if bytes.len() >= 3 => {
                return Err(Status::INVALID_CMAC)
            }
            Err(_) => return Err(Status::COMMUNICATION_ERROR),
        };
        let header = frame.header;
        let exchange = match frame.cmac {
            Some(mac) => Some(self.check_cmac(header, frame.payload, &mac)?),
            // An R-MAC needs the counter of a C-MAC'd exchange.
            None if header.wants_rmac() => return Err(Status::SESSION_ERROR),
            None => None,
        };
        let code = header.code();
        if !CommandCode::A110.contains(&code) {
            return Err(Status::COMMAND_CODE_NOT_SUPPORTED);
        }
        self.check_life_cycle(code)?;
        let (ac, enc) = self.nvm.policy_for(code);
        let host_ok = exchange.is_some();
        match ac {
            command_ac::FREE => {}
            command_ac::HOST | command_ac::ADMIN_OR_HOST if host_ok => {}
            command_ac::ADMIN_OR_PASSWORD if self.vol.password_ok => {}
            command_ac::HOST | command_ac::ADMIN_OR_HOST | command_ac::ADMIN_OR_PASSWORD => {
                return Err(Status::ACCESS_CONDITION_NOT_SATISFIED)
            }
            // NEVER, and ADMIN: sesame chips have no admin key, so no command can meet it.
            _ => return Err(Status::COMMAND_NOT_AUTHORIZED),
        }
        // An encrypted command or response needs the host channel.
        if enc != 0 && exchange.is_none() {
            return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
        }
        let mut plain_buf;
        let payload: &[u8] = match (&exchange, enc & ENC_COMMAND != 0) {
            (Some(x), true) => {
                plain_buf = frame.payload.to_vec();
                let n = secure::decrypt(&x.cipher, x.n, Direction::Command, &mut plain_buf)
                    .map_err(|_| Status::COMMAND_DECRYPTION_ERROR)?;
                &plain_buf[..n]
            }
            _ => frame.payload,
        };
        let request = Request::decode(code, payload).map_err(decode_status)?;

        let nvm_before = self.nvm.clone();
        let vol_before = self.vol.clone();
        let result = self.run(
            request,
            host_ok,
            exchange.as_ref(),
            enc,
            header,
            frame.payload,
        );
        match result {
            Ok(resp) => Ok(resp),
            Err(status) => {
                // The state rolls back; the reason a store failed is still to be reported.
                let failure = self.vol.storage_failure.take();
                *self.nvm = nvm_before;
                *self.vol = vol_before;
                self.vol.storage_failure = failure;
                Err(status)
            }
        }
    }

    fn run(
        &mut self,
        request: Request<'_>,
        host_ok: bool,
        exchange: Option<&Exchange>,
        enc: u8,
        header: Header,
        sent_payload: &[u8],
    ) -> Result<Vec<u8>, Status> {
        let mut ctx = Ctx {
            nvm: self.nvm,
            vol: self.vol,
            rng: self.rng,
            host_ok,
            dirty: false,
            out: Vec::new(),
        };
        crate::commands::dispatch(&mut ctx, request)?;
        let dirty = ctx.dirty;
        let mut data = ctx.out;
        if let Some(x) = exchange {
            if enc & ENC_RESPONSE != 0 && !data.is_empty() {
                let len = data.len();
                data.resize(secure::padded_len(len), 0);
                secure::encrypt(&x.cipher, x.n, Direction::Response, &mut data, len)
                    .map_err(|_| Status::UNEXPECTED_ERROR)?;
            }
        }
        let rmac = match exchange {
            Some(x) if header.wants_rmac() => Some(
                secure::response_mac(&x.mac, x.n, header, sent_payload, Status::OK.0, &data)
                    .map_err(|_| Status::BUFFER_LENGTH_EXCEEDED)?,
            ),
            _ => None,
        };
        if 1 + data.len() + rmac.map_or(0, |m| m.len()) > MAX_RESPONSE_FRAME {
            return Err(Status::BUFFER_LENGTH_EXCEEDED);
        }
        debug_assert!(image::validate(self.nvm).is_ok());
        if dirty {
            self.persist()?;
        }
        let frame = ResponseFrame {
            r: Status::OK.0,
            data: &data,
            rmac,
        };
        let mut out = vec![0u8; data.len() + 11];
        let n = frame
            .encode(&mut out)
            .map_err(|_| Status::UNEXPECTED_ERROR)?;
        out.truncate(n);
        Ok(out)
    }

    fn check_cmac(
        &mut self,
        header: Header,
        payload: &[u8],
        mac: &[u8; 4],
    ) -> Result<Exchange, Status> {
        if !header.host_channel() {
            // A session MAC (Start Session) is not implemented, so there is no such session.
            return Err(Status::SESSION_ERROR);
        }
        let Some(host) = self.nvm.host.as_mut() else {
            return Err(Status::KEY_NOT_FOUND);
        };
        let n = host.counter;
        if n >= COUNTER_MAX {
            return Err(Status::CMAC_COUNTER_MAX);
        }
        let expected =
            secure::command_mac(&host.mac, n, header, payload).map_err(|_| Status::INVALID_CMAC)?;
        if !bool::from(expected.ct_eq(mac)) {
            return Err(Status::INVALID_CMAC);
        }
        let x = Exchange {
            n,
            mac: host.mac,
            cipher: host.cipher,
        };
        host.counter = n + 1;
        if self.persist().is_err() {
            if let Some(h) = self.nvm.host.as_mut() {
                h.counter = n;
            }
            // The counter could not be advanced: answer "communication error", one of the two
            // statuses after which the host does not advance its own (§6.1), so both stay in step.
            return Err(Status::COMMUNICATION_ERROR);
        }
        Ok(x)
    }

    fn check_life_cycle(&self, code: CommandCode) -> Result<(), Status> {
        let lc = self.nvm.life_cycle();
        let always = [
            CommandCode::ECHO,
            CommandCode::QUERY,
            CommandCode::RESET,
            CommandCode::HIBERNATE,
        ];
        if always.contains(&code) {
            return Ok(());
        }
        if lc == sesame_wire::LifeCycle::TERMINATED {
            return Err(Status::INVALID_LIFE_CYCLE_STATE);
        }
        // Locked: only what is needed to unlock, plus reads and random.
        let when_locked = [
            CommandCode::GENERATE_RANDOM,
            CommandCode::VERIFY_PASSWORD,
            CommandCode::PUT_ATTRIBUTE,
            CommandCode::READ,
        ];
        if lc.is_locked() && !when_locked.contains(&code) {
            return Err(Status::INVALID_LIFE_CYCLE_STATE);
        }
        Ok(())
    }
}
