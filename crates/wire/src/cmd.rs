//! Typed request codecs: one variant per A110 command, decoding from and encoding to the payload
//! that follows the header byte (protocol.md §3).

use crate::codec::{Reader, Writer};
use crate::ecc::{Curve, PublicKey, Signature};
use crate::{AttributeTag, CommandCode, Error, LifeCycle, QueryTag};

/// Length of the A110 password.
pub const PASSWORD_LEN: usize = 16;
/// Most random bytes one Generate Random returns.
pub const MAX_RANDOM: usize = 255;
/// Generate Key tag for a private key.
pub const KEY_TAG_PRIVATE: u8 = 0x13;
/// Generate Key tag for a local envelope key.
pub const KEY_TAG_LOCAL_ENVELOPE: u8 = 0x07;
/// Delete tag for the password slot.
pub const DELETE_TAG_PASSWORD: u8 = 0x09;
/// The ephemeral private key slot.
pub const SLOT_EPHEMERAL: u8 = 0xFF;

/// The option byte of Read, Update and Decrement (protocol.md §3.6).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ZoneOption(pub u8);

impl ZoneOption {
    /// No AC change, no atomicity flag.
    pub const NONE: Self = Self(0);

    /// An option that changes the zone's AC to `ac` and its change right to `right`.
    pub fn change_ac(ac: u8, right: bool) -> Self {
        Self(0x10 | (u8::from(right) << 3) | (ac & 0x07))
    }

    /// Bit 4: the command changes the access condition.
    pub fn changes_ac(self) -> bool {
        self.0 & 0x10 != 0
    }

    /// Bits 2..0: the new access condition.
    pub fn new_ac(self) -> u8 {
        self.0 & 0x07
    }

    /// Bit 3: the new change right.
    pub fn new_change_right(self) -> bool {
        self.0 & 0x08 != 0
    }

    /// Bit 7 (Update only): atomic update.
    pub fn atomic(self) -> bool {
        self.0 & 0x80 != 0
    }

    /// True if bits that must be 0 for `code` are set.
    pub fn has_reserved_bits(self, code: CommandCode) -> bool {
        let allowed = if code == CommandCode::UPDATE {
            0x9F
        } else {
            0x1F
        };
        self.0 & !allowed != 0
    }
}

/// Put Attribute values sesame's chip implements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attribute<'a> {
    /// Tag 0x08: new life-cycle state.
    LifeCycle(LifeCycle),
    /// Tag 0x0A: I2C parameters (`address << 1`, flags byte).
    I2cParameters([u8; 2]),
    /// Tag 0x17: host MAC key then host cipher key.
    HostKey {
        /// Host MAC key.
        mac: &'a [u8; 16],
        /// Host cipher key.
        cipher: &'a [u8; 16],
    },
}

/// Generate Key variants.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyGeneration {
    /// Tag 0x13: a private key.
    Private {
        /// Slot 0, 1 or 0xFF.
        slot: u8,
        /// Allowed number of uses (sesame: 0xFFFF = unlimited).
        usage_limit: u16,
        /// Mode of operation (protocol.md §5); STSELib sends 0.
        mode: u16,
        /// Curve.
        curve: Curve,
    },
    /// Tag 0x07: a local envelope key.
    LocalEnvelope {
        /// Slot 0 or 1.
        slot: u8,
        /// 0 = AES-128, 1 = AES-256.
        key_type: u8,
    },
}

/// One command's request, borrowing its variable parts from the frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Request<'a> {
    /// Echo.
    Echo(&'a [u8]),
    /// Reset.
    Reset,
    /// Generate Random: subject (0) and count.
    GenerateRandom {
        /// Must be 0.
        subject: u8,
        /// 1..=255.
        len: u8,
    },
    /// Hibernate with a wake mode (1 = I2C start or reset, 2 = reset only).
    Hibernate {
        /// Wake mode.
        wake: u8,
    },
    /// Query one tag.
    Query(QueryTag),
    /// Put Attribute.
    PutAttribute(Attribute<'a>),
    /// Read.
    Read {
        /// Option byte.
        option: ZoneOption,
        /// Zone index.
        zone: u8,
        /// Offset in the zone (data segment for counter zones).
        offset: u16,
        /// Number of bytes.
        len: u16,
    },
    /// Update.
    Update {
        /// Option byte.
        option: ZoneOption,
        /// Zone index.
        zone: u8,
        /// Offset.
        offset: u16,
        /// Bytes to write.
        data: &'a [u8],
    },
    /// Decrement.
    Decrement {
        /// Option byte.
        option: ZoneOption,
        /// Zone index.
        zone: u8,
        /// Offset of `data` in the data segment.
        offset: u16,
        /// Amount to subtract.
        amount: u32,
        /// Bytes written with the decrement (may be empty).
        data: &'a [u8],
    },
    /// Generate Key.
    GenerateKey(KeyGeneration),
    /// Generate Signature over a host digest.
    GenerateSignature {
        /// Private key slot.
        slot: u8,
        /// The digest, signed as is.
        digest: &'a [u8],
    },
    /// Verify Signature (message signature, subject 0).
    VerifySignature {
        /// Curve of the key.
        curve: Curve,
        /// The public key.
        key: PublicKey<'a>,
        /// The signature.
        signature: Signature<'a>,
        /// The digest.
        digest: &'a [u8],
    },
    /// Establish Key (ECDH) with a private slot and the peer's public key.
    EstablishKey {
        /// Private key slot.
        slot: u8,
        /// The peer's public key.
        peer: PublicKey<'a>,
    },
    /// Wrap Local Envelope.
    Wrap {
        /// Local envelope key slot.
        slot: u8,
        /// Data to wrap (a multiple of 8 bytes).
        data: &'a [u8],
    },
    /// Unwrap Local Envelope.
    Unwrap {
        /// Local envelope key slot.
        slot: u8,
        /// The envelope.
        envelope: &'a [u8],
    },
    /// Verify Password.
    VerifyPassword(&'a [u8; PASSWORD_LEN]),
    /// Delete (tag 0x09 = password).
    Delete {
        /// What to delete.
        tag: u8,
    },
}

impl<'a> Request<'a> {
    /// The command code of this request.
    pub fn code(&self) -> CommandCode {
        match self {
            Self::Echo(_) => CommandCode::ECHO,
            Self::Reset => CommandCode::RESET,
            Self::GenerateRandom { .. } => CommandCode::GENERATE_RANDOM,
            Self::Hibernate { .. } => CommandCode::HIBERNATE,
            Self::Query(_) => CommandCode::QUERY,
            Self::PutAttribute(_) => CommandCode::PUT_ATTRIBUTE,
            Self::Read { .. } => CommandCode::READ,
            Self::Update { .. } => CommandCode::UPDATE,
            Self::Decrement { .. } => CommandCode::DECREMENT,
            Self::GenerateKey(_) => CommandCode::GENERATE_KEY,
            Self::GenerateSignature { .. } => CommandCode::GENERATE_SIGNATURE,
            Self::VerifySignature { .. } => CommandCode::VERIFY_SIGNATURE,
            Self::EstablishKey { .. } => CommandCode::ESTABLISH_KEY,
            Self::Wrap { .. } => CommandCode::WRAP_LOCAL_ENVELOPE,
            Self::Unwrap { .. } => CommandCode::UNWRAP_LOCAL_ENVELOPE,
            Self::VerifyPassword(_) => CommandCode::VERIFY_PASSWORD,
            Self::Delete { .. } => CommandCode::DELETE,
        }
    }

    /// Decodes the (plaintext) payload of command `code`. Fails with
    /// [`Error::UnsupportedCommand`] for codes the A110 does not execute.
    pub fn decode(code: CommandCode, payload: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(payload);
        let req = match code {
            CommandCode::ECHO => Self::Echo(r.take_rest()),
            CommandCode::RESET => Self::Reset,
            CommandCode::GENERATE_RANDOM => Self::GenerateRandom {
                subject: r.u8()?,
                len: r.u8()?,
            },
            CommandCode::HIBERNATE => Self::Hibernate { wake: r.u8()? },
            CommandCode::QUERY => {
                // Only the A110 tags sesame answers; anything else is UnknownTag (as for
                // Put Attribute and Generate Key), not a value the chip must interpret.
                let tag = QueryTag(r.u8()?);
                if tag.name().is_none() {
                    return Err(Error::UnknownTag { at: 0 });
                }
                Self::Query(tag)
            }
            CommandCode::PUT_ATTRIBUTE => Self::PutAttribute(decode_attribute(&mut r)?),
            CommandCode::READ => Self::Read {
                option: ZoneOption(r.u8()?),
                zone: r.u8()?,
                offset: r.u16()?,
                len: r.u16()?,
            },
            CommandCode::UPDATE => Self::Update {
                option: ZoneOption(r.u8()?),
                zone: r.u8()?,
                offset: r.u16()?,
                data: r.take_rest(),
            },
            CommandCode::DECREMENT => Self::Decrement {
                option: ZoneOption(r.u8()?),
                zone: r.u8()?,
                offset: r.u16()?,
                amount: r.u32()?,
                data: r.take_rest(),
            },
            CommandCode::GENERATE_KEY => Self::GenerateKey(decode_key_generation(&mut r)?),
            CommandCode::GENERATE_SIGNATURE => Self::GenerateSignature {
                slot: r.u8()?,
                digest: r.len16_prefixed()?,
            },
            CommandCode::VERIFY_SIGNATURE => {
                let at = r.position();
                if r.u8()? != 0 {
                    return Err(Error::InvalidValue { at });
                }
                Self::VerifySignature {
                    curve: Curve::read(&mut r)?,
                    key: PublicKey::read(&mut r)?,
                    signature: Signature::read(&mut r)?,
                    digest: r.len16_prefixed()?,
                }
            }
            CommandCode::ESTABLISH_KEY => Self::EstablishKey {
                slot: r.u8()?,
                peer: PublicKey::read(&mut r)?,
            },
            CommandCode::WRAP_LOCAL_ENVELOPE => Self::Wrap {
                slot: r.u8()?,
                data: r.take_rest(),
            },
            CommandCode::UNWRAP_LOCAL_ENVELOPE => Self::Unwrap {
                slot: r.u8()?,
                envelope: r.take_rest(),
            },
            CommandCode::VERIFY_PASSWORD => {
                let pw: &[u8; PASSWORD_LEN] = r
                    .take(PASSWORD_LEN)?
                    .try_into()
                    .map_err(|_| Error::Truncated { at: 0 })?;
                Self::VerifyPassword(pw)
            }
            CommandCode::DELETE => Self::Delete { tag: r.u8()? },
            other => return Err(Error::UnsupportedCommand { code: other.0 }),
        };
        r.finish()?;
        Ok(req)
    }

    /// Encodes the plaintext payload (everything after the header byte).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(out);
        match *self {
            Self::Echo(data) => {
                w.put(data);
            }
            Self::Reset => {}
            Self::GenerateRandom { subject, len } => {
                w.u8(subject).u8(len);
            }
            Self::Hibernate { wake } => {
                w.u8(wake);
            }
            Self::Query(tag) => {
                w.u8(tag.0);
            }
            Self::PutAttribute(attr) => match attr {
                Attribute::LifeCycle(lc) => {
                    w.u8(AttributeTag::LIFE_CYCLE.0).u8(lc.0);
                }
                Attribute::I2cParameters(p) => {
                    w.u8(AttributeTag::I2C_PARAMETERS.0).put(&p);
                }
                Attribute::HostKey { mac, cipher } => {
                    w.u8(AttributeTag::HOST_KEY.0).put(mac).put(cipher);
                }
            },
            Self::Read {
                option,
                zone,
                offset,
                len,
            } => {
                w.u8(option.0).u8(zone).u16(offset).u16(len);
            }
            Self::Update {
                option,
                zone,
                offset,
                data,
            } => {
                w.u8(option.0).u8(zone).u16(offset).put(data);
            }
            Self::Decrement {
                option,
                zone,
                offset,
                amount,
                data,
            } => {
                w.u8(option.0).u8(zone).u16(offset).u32(amount).put(data);
            }
            Self::GenerateKey(KeyGeneration::Private {
                slot,
                usage_limit,
                mode,
                curve,
            }) => {
                w.u8(KEY_TAG_PRIVATE).u8(slot).u16(usage_limit).u16(mode);
                curve.write(&mut w);
            }
            Self::GenerateKey(KeyGeneration::LocalEnvelope { slot, key_type }) => {
                w.u8(KEY_TAG_LOCAL_ENVELOPE).u8(slot).u8(key_type);
            }
            Self::GenerateSignature { slot, digest } => {
                w.u8(slot).len16_prefixed(digest);
            }
            Self::VerifySignature {
                curve,
                key,
                signature,
                digest,
            } => {
                w.u8(0);
                curve.write(&mut w);
                key.write(&mut w);
                signature.write(&mut w);
                w.len16_prefixed(digest);
            }
            Self::EstablishKey { slot, peer } => {
                w.u8(slot);
                peer.write(&mut w);
            }
            Self::Wrap { slot, data } => {
                w.u8(slot).put(data);
            }
            Self::Unwrap { slot, envelope } => {
                w.u8(slot).put(envelope);
            }
            Self::VerifyPassword(pw) => {
                w.put(pw);
            }
            Self::Delete { tag } => {
                w.u8(tag);
            }
        }
        w.finish()
    }
}

fn decode_attribute<'a>(r: &mut Reader<'a>) -> Result<Attribute<'a>, Error> {
    let at = r.position();
    match AttributeTag(r.u8()?) {
        AttributeTag::LIFE_CYCLE => Ok(Attribute::LifeCycle(LifeCycle(r.u8()?))),
        AttributeTag::I2C_PARAMETERS => Ok(Attribute::I2cParameters(r.array()?)),
        AttributeTag::HOST_KEY => {
            let mac = r
                .take(16)?
                .try_into()
                .map_err(|_| Error::Truncated { at })?;
            let cipher = r
                .take(16)?
                .try_into()
                .map_err(|_| Error::Truncated { at })?;
            Ok(Attribute::HostKey { mac, cipher })
        }
        _ => Err(Error::UnknownTag { at }),
    }
}

fn decode_key_generation(r: &mut Reader<'_>) -> Result<KeyGeneration, Error> {
    let at = r.position();
    match r.u8()? {
        KEY_TAG_PRIVATE => Ok(KeyGeneration::Private {
            slot: r.u8()?,
            usage_limit: r.u16()?,
            mode: r.u16()?,
            curve: Curve::read(r)?,
        }),
        KEY_TAG_LOCAL_ENVELOPE => Ok(KeyGeneration::LocalEnvelope {
            slot: r.u8()?,
            key_type: r.u8()?,
        }),
        _ => Err(Error::UnknownTag { at }),
    }
}
