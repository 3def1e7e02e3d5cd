//! `sesame device zone read | write` and `counter decrement`: the data partition through the
//! driver, plain or with C-MAC + R-MAC (`--mac`).

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use embedded_hal::i2c::I2c;
use serde_json::json;

use super::{hex_arg, Device};

#[derive(Subcommand, Debug)]
pub enum ZoneCommand {
    /// Read bytes of a zone (hex); a counter zone also shows its counter.
    Read {
        /// Zone index.
        #[arg(long)]
        zone: u8,
        /// First byte to read.
        #[arg(long, default_value_t = 0)]
        offset: u16,
        /// Number of bytes (253 per command).
        #[arg(long)]
        len: usize,
        /// Use C-MAC + R-MAC with the host keys (opens a session).
        #[arg(long)]
        mac: bool,
    },
    /// Write bytes into a plain zone.
    Write {
        /// Zone index.
        #[arg(long)]
        zone: u8,
        /// First byte to write.
        #[arg(long, default_value_t = 0)]
        offset: u16,
        /// The bytes, hex.
        #[arg(long)]
        data: String,
        /// Use C-MAC + R-MAC with the host keys (opens a session).
        #[arg(long)]
        mac: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CounterCommand {
    /// Decrement a one-way counter (optionally writing its data segment); prints the new value.
    Decrement {
        /// Counter zone index.
        #[arg(long)]
        zone: u8,
        /// How much to subtract (at least 1).
        #[arg(long)]
        amount: u32,
        /// Bytes to write into the zone's data segment in the same operation, hex.
        #[arg(long)]
        data: Option<String>,
        /// Offset of --data in the data segment.
        #[arg(long, default_value_t = 0)]
        offset: u16,
        /// Use C-MAC + R-MAC with the host keys (opens a session).
        #[arg(long)]
        mac: bool,
    },
}

impl<I> Device<I>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    pub(super) fn zone_read(&mut self, zone: u8, offset: u16, len: usize, mac: bool) -> Result<()> {
        let record = self
            .se
            .query_data_partition()?
            .find(|z| z.index == zone)
            .ok_or_else(|| anyhow!("the chip has no zone {zone}"))?;
        let access = self.access(mac)?;
        let mut data = vec![0u8; len];
        let mut counter = None;
        let what = || format!("cannot read zone {zone}");
        if record.counter.is_some() {
            // Each Read of a counter zone answers the counter, then the data.
            for (i, chunk) in data.chunks_mut(sesame_host::CHUNK).enumerate() {
                let at = u16::try_from(offset as usize + i * sesame_host::CHUNK)
                    .context("--offset + --len past 65535")?;
                let c = self.se.read_counter_with(zone, at, chunk, access);
                counter = Some(c.with_context(what)?);
            }
            if counter.is_none() {
                let c = self.se.read_counter_with(zone, offset, &mut [], access);
                counter = Some(c.with_context(what)?);
            }
        } else {
            self.se
                .read_zone_with(zone, offset, &mut data, access)
                .with_context(what)?;
        }
        let h = hex::encode(&data);
        self.emit(
            json!({"zone": zone, "offset": offset, "len": len, "data": h,
                   "counter": counter, "mac": mac}),
            || match counter {
                Some(c) => format!("counter {c}\n{h}"),
                None => h.clone(),
            },
        )
    }

    pub(super) fn zone_write(
        &mut self,
        zone: u8,
        offset: u16,
        data: &str,
        mac: bool,
    ) -> Result<()> {
        let data = hex_arg("--data", data)?;
        let access = self.access(mac)?;
        self.se
            .update_zone_with(zone, offset, &data, access)
            .with_context(|| format!("cannot write zone {zone}"))?;
        let via = if mac { " (C-MAC + R-MAC)" } else { "" };
        self.emit(
            json!({"zone": zone, "offset": offset, "written": data.len(), "mac": mac}),
            || {
                format!(
                    "wrote {} bytes to zone {zone} at offset {offset}{via}",
                    data.len()
                )
            },
        )
    }

    pub(super) fn decrement(
        &mut self,
        zone: u8,
        offset: u16,
        amount: u32,
        data: Option<&str>,
        mac: bool,
    ) -> Result<()> {
        if amount == 0 {
            bail!("--amount must be at least 1");
        }
        let data = data.map(|d| hex_arg("--data", d)).transpose()?;
        let access = self.access(mac)?;
        let value = self
            .se
            .decrement_with(zone, offset, amount, data.as_deref().unwrap_or(&[]), access)
            .map_err(|e| {
                if e.outcome_unknown() {
                    anyhow::anyhow!(
                        "outcome unknown: the counter may have been decremented; read it before \
                         retrying ({e})"
                    )
                } else {
                    anyhow::Error::new(e)
                        .context(format!("cannot decrement the counter of zone {zone}"))
                }
            })?;
        self.emit(
            json!({"zone": zone, "amount": amount, "counter": value, "mac": mac}),
            || value.to_string(),
        )
    }
}
