//! Command codes, status codes and attribute tags as newtypes over the byte with named consts:
//! unknown values survive a round trip and `Debug` prints the name or the hex.

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$doc:meta])* $konst:ident = $val:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u8);

        impl $name {
            $($(#[$doc])* pub const $konst: Self = Self($val);)*

            /// Every named value, in table order.
            pub const ALL: &'static [Self] = &[$(Self::$konst),*];

            /// The protocol name of a known value.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($konst)),)*
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}(0x{:02X})", stringify!($name), self.0),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(self, f)
            }
        }

        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                Self(v)
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v.0
            }
        }
    };
}

wire_enum! {
    /// A command code: the low five bits of the header byte (protocol.md §3.1).
    CommandCode {
        /// Echo: returns its payload.
        ECHO = 0x00,
        /// Reset: clears volatile state.
        RESET = 0x01,
        /// Generate Random.
        GENERATE_RANDOM = 0x02,
        /// Start Session (A110 signature session; not used by STSELib).
        START_SESSION = 0x03,
        /// Decrement a one-way counter zone.
        DECREMENT = 0x04,
        /// Read a zone.
        READ = 0x05,
        /// Update a plain zone.
        UPDATE = 0x06,
        /// Increment (not on A110).
        INCREMENT = 0x07,
        /// Derive LoRa key (not on A110).
        DERIVE_LORA_KEY = 0x08,
        /// Generate MAC (not on A110).
        GENERATE_MAC = 0x09,
        /// Verify MAC (not on A110).
        VERIFY_MAC = 0x0A,
        /// Unwrap issuer envelope (not on A110).
        UNWRAP_ISSUER_ENVELOPE = 0x0B,
        /// Delete (the password slot).
        DELETE = 0x0C,
        /// Hibernate.
        HIBERNATE = 0x0D,
        /// Wrap Local Envelope.
        WRAP_LOCAL_ENVELOPE = 0x0E,
        /// Unwrap Local Envelope.
        UNWRAP_LOCAL_ENVELOPE = 0x0F,
        /// Put Attribute.
        PUT_ATTRIBUTE = 0x10,
        /// Generate Key (private key or local envelope key).
        GENERATE_KEY = 0x11,
        /// Put Key (not on A110).
        PUT_KEY = 0x12,
        /// Configure (not on A110).
        CONFIGURE = 0x13,
        /// Query.
        QUERY = 0x14,
        /// Get Signature (not on A110 via STSELib).
        GET_SIGNATURE = 0x15,
        /// Generate Signature over a host digest.
        GENERATE_SIGNATURE = 0x16,
        /// Verify Signature (message signature).
        VERIFY_SIGNATURE = 0x17,
        /// Establish Key (ECDH).
        ESTABLISH_KEY = 0x18,
        /// Standby (not on A110).
        STANDBY = 0x19,
        /// Verify Password.
        VERIFY_PASSWORD = 0x1A,
        /// Encrypt (A120).
        ENCRYPT = 0x1B,
        /// Decrypt (A120).
        DECRYPT = 0x1C,
        /// Chunk prefix (defined, never used).
        CHUNK_PREFIX = 0x1E,
        /// Extended-command prefix (A120).
        EXTENDED_PREFIX = 0x1F,
    }
}

impl CommandCode {
    /// The commands an STSAFE-A110 executes (sesame's chip implements exactly these, less
    /// Start Session, which no host library uses).
    pub const A110: &'static [Self] = &[
        Self::ECHO,
        Self::RESET,
        Self::GENERATE_RANDOM,
        Self::DECREMENT,
        Self::READ,
        Self::UPDATE,
        Self::DELETE,
        Self::HIBERNATE,
        Self::WRAP_LOCAL_ENVELOPE,
        Self::UNWRAP_LOCAL_ENVELOPE,
        Self::PUT_ATTRIBUTE,
        Self::GENERATE_KEY,
        Self::QUERY,
        Self::GENERATE_SIGNATURE,
        Self::VERIFY_SIGNATURE,
        Self::ESTABLISH_KEY,
        Self::VERIFY_PASSWORD,
    ];
}

wire_enum! {
    /// A response status: bits 4..0 of the response's first byte (protocol.md §2).
    Status {
        /// Success.
        OK = 0x00,
        /// Communication error (e.g. frame CRC).
        COMMUNICATION_ERROR = 0x01,
        /// Inconsistent command data.
        INCONSISTENT_COMMAND_DATA = 0x02,
        /// Value out of range.
        VALUE_OUT_OF_RANGE = 0x03,
        /// Command code not supported.
        COMMAND_CODE_NOT_SUPPORTED = 0x04,
        /// Unexpected error.
        UNEXPECTED_ERROR = 0x05,
        /// Buffer length exceeded.
        BUFFER_LENGTH_EXCEEDED = 0x06,
        /// Session error (no or wrong session).
        SESSION_ERROR = 0x07,
        /// Too many messages lost.
        TOO_MANY_MESSAGES_LOST = 0x08,
        /// C-MAC counter maximum reached.
        CMAC_COUNTER_MAX = 0x09,
        /// Key not found.
        KEY_NOT_FOUND = 0x0A,
        /// Key blocked / not available for this usage.
        KEY_BLOCKED = 0x0B,
        /// Wrong key type.
        WRONG_KEY_TYPE = 0x0C,
        /// Session counter out of range.
        SESSION_COUNTER_OUT_OF_RANGE = 0x0D,
        /// Invalid life-cycle state.
        INVALID_LIFE_CYCLE_STATE = 0x0F,
        /// Entry not found.
        ENTRY_NOT_FOUND = 0x10,
        /// Access condition not satisfied.
        ACCESS_CONDITION_NOT_SATISFIED = 0x11,
        /// Wrong zone type.
        WRONG_ZONE_TYPE = 0x12,
        /// Counter limit exceeded.
        COUNTER_LIMIT_EXCEEDED = 0x13,
        /// Boundary exceeded.
        BOUNDARY_EXCEEDED = 0x14,
        /// Invalid private key.
        INVALID_PRIVATE_KEY = 0x15,
        /// Invalid C-MAC.
        INVALID_CMAC = 0x16,
        /// Challenge missing.
        CHALLENGE_MISSING = 0x17,
        /// Command decryption error.
        COMMAND_DECRYPTION_ERROR = 0x18,
        /// Invalid public key.
        INVALID_PUBLIC_KEY = 0x19,
        /// Password blocked.
        PASSWORD_BLOCKED = 0x1A,
        /// Wrong key usage.
        WRONG_KEY_USAGE = 0x1B,
        /// Wrong mode of operation.
        WRONG_MODE_OF_OPERATION = 0x1C,
        /// Wrong MAC length.
        WRONG_MAC_LENGTH = 0x1D,
        /// Command not authorized.
        COMMAND_NOT_AUTHORIZED = 0x1E,
        /// Old message.
        OLD_MESSAGE = 0x1F,
    }
}

wire_enum! {
    /// A Query tag (protocol.md §3.5).
    QueryTag {
        /// Local envelope key table.
        LOCAL_ENVELOPE_KEYS = 0x07,
        /// Life-cycle state.
        LIFE_CYCLE = 0x08,
        /// I2C parameters.
        I2C_PARAMETERS = 0x0A,
        /// Product data (TLV list).
        PRODUCT_DATA = 0x11,
        /// Data partition configuration.
        DATA_PARTITION = 0x12,
        /// Private key table.
        PRIVATE_KEYS = 0x14,
        /// Host key slot v1 (A110).
        HOST_KEY = 0x17,
        /// Command authorization configuration.
        COMMAND_AUTHORIZATION = 0x24,
    }
}

wire_enum! {
    /// A Put Attribute tag (protocol.md §3.4).
    AttributeTag {
        /// Admin base key (A110; not implemented).
        ADMIN_BASE_KEY = 0x01,
        /// Life-cycle state.
        LIFE_CYCLE = 0x08,
        /// Password (A110; not implemented).
        PASSWORD = 0x09,
        /// I2C parameters.
        I2C_PARAMETERS = 0x0A,
        /// Host key slot v1: MAC key (16) then cipher key (16).
        HOST_KEY = 0x17,
        /// Command access conditions (A110; not implemented).
        COMMAND_AC = 0x29,
        /// Command host-encryption flags (A110; not implemented).
        COMMAND_ENCRYPTION = 0x2A,
    }
}

wire_enum! {
    /// A life-cycle state (protocol.md §3.5, Query tag 0x08).
    LifeCycle {
        /// Born (personalization open).
        BORN = 0x01,
        /// Patching.
        PATCHING = 0x02,
        /// Operational.
        OPERATIONAL = 0x03,
        /// Terminated.
        TERMINATED = 0x04,
        /// Born and locked.
        BORN_LOCKED = 0x81,
        /// Operational and locked.
        OPERATIONAL_LOCKED = 0x83,
    }
}

impl LifeCycle {
    /// True for the locked states (bit 7).
    pub fn is_locked(self) -> bool {
        self.0 & 0x80 != 0
    }
}
