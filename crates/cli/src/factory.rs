//! `sesame factory`: the CLI side of [`sesame_factory`]: its errors as exit codes, and a
//! progress bar on a terminal.

use std::path::Path;

pub use sesame_factory::{layout, zones, FactoryDir, RealDisk, ORG, SIGNATURE_FILE};
use sesame_pki::KeyAlg;

/// A factory failure as the CLI reports it: the caller's mistakes exit 2.
pub fn cli_err(e: sesame_factory::Error) -> anyhow::Error {
    if e.kind() == sesame_factory::Kind::Usage {
        crate::out::usage(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

/// `factory init`.
pub fn init(
    dir: &Path,
    family: &str,
    alg: KeyAlg,
    device_validity_days: Option<u32>,
) -> anyhow::Result<()> {
    sesame_factory::init(dir, family, alg, device_validity_days).map_err(cli_err)
}

/// `factory family new`.
pub fn family_new(dir: &Path, name: &str, alg: KeyAlg) -> anyhow::Result<()> {
    sesame_factory::family_new(dir, name, alg).map_err(cli_err)
}

/// `factory tls`.
pub fn tls(dir: &Path, names: &[String]) -> anyhow::Result<sesame_factory::tls::TlsFiles> {
    sesame_factory::tls::issue(dir, names).map_err(cli_err)
}

/// An indicatif bar, or nothing when `show` is false.
struct Bar(indicatif::ProgressBar);

impl sesame_factory::Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }
    fn inc(&self) {
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// `factory personalize`, with a progress bar when `show_progress`.
pub fn personalize(
    dir: &Path,
    family: &str,
    count: usize,
    out: &Path,
    profile: &str,
    validity_days: Option<u32>,
    show_progress: bool,
) -> anyhow::Result<sesame_factory::BatchReport> {
    let bar = if show_progress {
        indicatif::ProgressBar::new(count as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} chips  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    sesame_factory::personalize(
        dir,
        family,
        count,
        out,
        profile,
        validity_days,
        &RealDisk,
        &Bar(bar),
    )
    .map_err(cli_err)
}
