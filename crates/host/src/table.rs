//! The command authorization table (Query 0x24), kept in a fixed array inside the driver, and
//! the protection each command gets from it (protocol.md §6.6).

use sesame_wire::resp::{command_ac, CommandAuthRecord, ENC_COMMAND, ENC_RESPONSE};
use sesame_wire::{CommandCode, Reader};

/// How a command travels on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// A plain frame.
    Plain,
    /// C-MAC on the command, R-MAC on the response (header `0xE0 | code`).
    Mac,
    /// C-MAC and R-MAC, with the command payload and/or the response data encrypted.
    Encrypted {
        /// The command payload is encrypted.
        command: bool,
        /// The response data is encrypted.
        response: bool,
    },
}

impl Protection {
    /// True unless plain: the command needs an open host session.
    pub fn is_protected(self) -> bool {
        self != Self::Plain
    }

    /// At least C-MAC + R-MAC: a stronger protection is kept as it is.
    pub(crate) fn at_least_mac(self) -> Self {
        match self {
            Self::Plain => Self::Mac,
            other => other,
        }
    }

    pub(crate) fn encrypts_command(self) -> bool {
        matches!(self, Self::Encrypted { command: true, .. })
    }

    pub(crate) fn encrypts_response(self) -> bool {
        matches!(self, Self::Encrypted { response: true, .. })
    }
}

/// One command's entry: access condition and encryption flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    ac: u8,
    encryption: u8,
}

/// Access condition and encryption flags per 5-bit command code. Until
/// [`Stsafe::init`](crate::Stsafe::init) loads the chip's table, every command is free and
/// plain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CommandTable {
    entries: [Entry; 32],
    /// The CR byte: change rights of the table.
    pub change_rights: u8,
}

impl Default for CommandTable {
    fn default() -> Self {
        Self {
            entries: [Entry {
                ac: command_ac::FREE,
                encryption: 0,
            }; 32],
            change_rights: 0,
        }
    }
}

impl CommandTable {
    /// Parses a Query 0x24 answer: `CR(1) N(1)` then N records. Records of extended (A120)
    /// commands are skipped; a code without a record stays free and plain.
    pub fn parse(data: &[u8]) -> Result<Self, sesame_wire::Error> {
        let mut r = Reader::new(data);
        let mut table = Self {
            change_rights: r.u8()?,
            ..Self::default()
        };
        let n = r.u8()?;
        for _ in 0..n {
            let rec = CommandAuthRecord::read(&mut r)?;
            if rec.code != CommandCode::EXTENDED_PREFIX {
                table.entries[(rec.code.0 & 0x1F) as usize] = Entry {
                    ac: rec.ac,
                    encryption: rec.encryption,
                };
            }
        }
        r.finish()?;
        Ok(table)
    }

    /// §6.6: an encryption flag → encrypted with C-MAC and R-MAC; else an AC other than free →
    /// C-MAC and R-MAC; else plain. Unlike STSELib, which keeps the AC in 2 bits (so that AC 5,
    /// admin-or-host, reads as free), the whole AC is used: AC 5 is protected.
    pub fn protection(&self, code: CommandCode) -> Protection {
        let e = self.entries[(code.0 & 0x1F) as usize];
        if e.encryption & (ENC_COMMAND | ENC_RESPONSE) != 0 {
            Protection::Encrypted {
                command: e.encryption & ENC_COMMAND != 0,
                response: e.encryption & ENC_RESPONSE != 0,
            }
        } else if e.ac != command_ac::FREE {
            Protection::Mac
        } else {
            Protection::Plain
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protection_follows_section_6_6() {
        // CR, N = 6, then records: echo free, read AC host, update AC admin-or-host (5),
        // random free + response encryption, an A120 extended record (1F 0E), reset AC never.
        let data = [
            0x03, 6, //
            0x00, 1, 0, //
            0x05, 3, 0, //
            0x06, 5, 0, //
            0x02, 1, 1, //
            0x1F, 0x0E, 3, 2, //
            0x01, 0, 0,
        ];
        let t = CommandTable::parse(&data).unwrap();
        assert_eq!(t.change_rights, 3);
        assert_eq!(t.protection(CommandCode::ECHO), Protection::Plain);
        assert_eq!(t.protection(CommandCode::READ), Protection::Mac);
        assert_eq!(t.protection(CommandCode::UPDATE), Protection::Mac, "AC 5");
        assert_eq!(
            t.protection(CommandCode::GENERATE_RANDOM),
            Protection::Encrypted {
                command: false,
                response: true
            }
        );
        assert_eq!(
            t.protection(CommandCode::RESET),
            Protection::Mac,
            "AC never"
        );
        assert_eq!(
            t.protection(CommandCode::EXTENDED_PREFIX),
            Protection::Plain
        );
        assert_eq!(
            t.protection(CommandCode::QUERY),
            Protection::Plain,
            "no record"
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        assert!(CommandTable::parse(&[]).is_err());
        assert!(CommandTable::parse(&[0, 2, 0x00, 1, 0]).is_err(), "short");
        assert!(
            CommandTable::parse(&[0, 1, 0x00, 1, 0, 9]).is_err(),
            "trailing"
        );
    }

    #[test]
    fn at_least_mac_keeps_encryption() {
        let enc = Protection::Encrypted {
            command: true,
            response: false,
        };
        assert_eq!(enc.at_least_mac(), enc);
        assert_eq!(Protection::Plain.at_least_mac(), Protection::Mac);
    }
}
