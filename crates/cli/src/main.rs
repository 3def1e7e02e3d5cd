//! `sesame`: the one binary over the sesame crates. Thin: parse, validate, call a library.
//!
//! Exit codes: 0 when everything asked was done (also "nothing to update", and a reader that
//! closed the pipe early), 1 failure (message on stderr; under `--json` also
//! `{"error", "message"}` on stdout), 2 usage error, 130 interrupted (after a summary).

#[macro_use]
mod out;

mod bench;
mod bench_auth;
mod chip_cmd;
mod client;
mod cloud_cmd;
mod cloud_serve;
mod cputime;
mod demo;
mod device_cmd;
mod factory;
mod files;
mod firmware;
mod fleet;
mod mqtt_cmd;
mod serve_check;
mod sim;
mod vocab;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sesame_chip::{CurveName, Faults};

#[derive(Parser, Debug)]
#[command(
    name = "sesame",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SESAME_COMMIT"), ")"),
    about = "Authenticate connected devices with a secure element"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the end-to-end demo in a temporary directory.
    Demo,
    /// Software STSAFE-A110 chips.
    #[command(subcommand)]
    Chip(ChipCommand),
    /// Firmware releases.
    #[command(subcommand)]
    Firmware(FirmwareCommand),
    /// The cloud service and its operator API.
    #[command(subcommand)]
    Cloud(cloud_cmd::CloudCommand),
    /// The secure fab: CAs, families, batch personalization.
    #[command(subcommand)]
    Factory(FactoryCommand),
    /// Benchmarks that print rates and ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Talk to a chip through the host driver: info, certificate, authentication, zones.
    Device(device_cmd::DeviceArgs),
    /// Simulate a fleet of in-process devices against a cloud.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Print a shell completion script, e.g. `sesame completions bash > /etc/bash_completion.d/sesame`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (sesame.1 and one per subcommand) into a directory.
    Man {
        /// Directory to write into (created if absent).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum FirmwareCommand {
    /// Write a signed release manifest (version, SHA-256, size, signature) for an image.
    Sign {
        /// Firmware-signing key (PKCS#8 PEM, from `sesame factory init`).
        #[arg(long)]
        key: PathBuf,
        /// The factory whose devices will check the release: the key must be its firmware key
        /// (default: the key's directory, when it is a factory).
        #[arg(long, value_name = "DIR")]
        factory: Option<PathBuf>,
        /// Release version (the chip's anti-rollback counter refuses lower ones).
        #[arg(long)]
        version: u32,
        /// The image.
        image: PathBuf,
        /// Manifest file to write (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Concurrent device authentications vs the raw P-256 verify rate; --registry: registry scale.
    Auth(bench_auth::AuthArgs),
    /// Personalize chips and compare with raw key generation + certificate signing.
    Factory {
        /// Chips to personalize (one order is 5,000).
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Directory to write the batch under (default: the system temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum FactoryCommand {
    /// Create a factory: root CA, first family, command- and firmware-signing keys, chip key.
    Init {
        /// Factory directory (must be empty or absent).
        #[arg(long)]
        dir: PathBuf,
        /// Name of the first family.
        #[arg(long, default_value = "family-1")]
        family: String,
        /// CA key algorithm.
        #[arg(long, value_enum, default_value = "p256")]
        curve: CurveArg,
        /// Validity of the device certificates this factory issues, in days (default 5479:
        /// 15 years; `personalize --validity-days` overrides it for one batch).
        #[arg(long, value_name = "DAYS")]
        device_validity_days: Option<u32>,
    },
    /// A TLS server certificate for the cloud, issued by the factory's root CA (clients then
    /// trust it with `--cacert DIR/root.pem`). Writes DIR/tls/NAME.pem and NAME.key.pem (0600).
    Tls {
        /// Factory directory.
        #[arg(long)]
        dir: PathBuf,
        /// Host name or IP address the cloud is reached by (repeat for several; the first
        /// names the files).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
    /// Families of devices (one family CA each).
    #[command(subcommand)]
    Family(FamilyCommand),
    /// Personalize a batch of chips.
    Personalize {
        /// Factory directory.
        #[arg(long)]
        dir: PathBuf,
        /// Family whose CA signs the devices.
        #[arg(long)]
        family: String,
        /// Number of chips.
        #[arg(long)]
        count: usize,
        /// Output directory (a rerun with the same arguments resumes).
        #[arg(long)]
        out: PathBuf,
        /// Chip profile: p256 (default), p384, or p256-encrypted / p384-encrypted (Generate
        /// Random and Read answer encrypted, Update takes encrypted data; host C-MAC required).
        #[arg(long, default_value = "p256")]
        profile: String,
        /// Validity of this batch's device certificates, in days (default: the factory's, set
        /// at `factory init`).
        #[arg(long, value_name = "DAYS")]
        validity_days: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
enum FamilyCommand {
    /// Add a family CA signed by the root.
    New {
        /// Family name.
        name: String,
        /// Factory directory.
        #[arg(long)]
        dir: PathBuf,
        /// Key algorithm.
        #[arg(long, value_enum, default_value = "p256")]
        curve: CurveArg,
    },
}

fn alg(c: CurveArg) -> sesame_pki::KeyAlg {
    match c {
        CurveArg::P256 => sesame_pki::KeyAlg::P256,
        CurveArg::P384 => sesame_pki::KeyAlg::P384,
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CurveArg {
    P256,
    P384,
}

fn parse_address(s: &str) -> Result<u8, String> {
    let v = match s.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| e.to_string())?;
    if (0x08..=0x77).contains(&v) {
        Ok(v)
    } else {
        Err("a 7-bit I2C address must be in 0x08..=0x77".into())
    }
}

/// Where the image sealing key comes from.
#[derive(clap::Args, Debug)]
struct KeyArgs {
    /// File with the 256-bit image sealing key (64 hex digits); default: $SESAME_CHIP_KEY.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum ChipCommand {
    /// Make a new image sealing key file (mode 0600).
    Key {
        /// Key file to create (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a ready chip image: key generated inside, certificate from the chip's own CA in zone 0.
    New {
        /// Image file to create (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
        /// Curve of the slot-0 key.
        #[arg(long, value_enum, default_value = "p256")]
        curve: CurveArg,
        /// 7-bit I2C address.
        #[arg(long, default_value = "0x20", value_parser = parse_address)]
        address: u8,
        /// Command table: `plain` (every command free and in clear) or `encrypted` (Generate
        /// Random and Read answer encrypted, Update takes encrypted data; host C-MAC required).
        #[arg(long, default_value = "plain", value_parser = ["plain", "encrypted"])]
        profile: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Show zones, counters, life cycle and public keys (never private ones).
    Inspect {
        /// Image file.
        image: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Serve chips on a virtual I2C bus (protocol.md §10).
    Serve {
        /// Chip images (one chip each, at its own address).
        #[arg(long = "image", required = true, num_args = 1..)]
        images: Vec<PathBuf>,
        /// `127.0.0.1:PORT` or `unix:PATH`.
        #[arg(long)]
        listen: String,
        /// NACK reads until the A110's processing time has passed.
        #[arg(long)]
        timing: bool,
        /// Inject bus faults, e.g. `seed=7,nack=0.05,burst=3,corrupt=0.01,drop=0.01,cut=0.001`.
        #[arg(long, value_parser = Faults::parse)]
        faults: Option<Faults>,
        /// Most clients connected at once; more are closed at once.
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
        /// Close a connection that sends nothing for this many seconds.
        #[arg(long, default_value_t = 300)]
        idle_timeout: u64,
        /// Log every transaction at debug level on stderr: chip, command, request and response
        /// lengths, status, duration (never a payload).
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo => demo::run(),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into memory first: clap_complete panics on a write error such as a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sesame", &mut script);
            outln!("{}", String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
        Command::Man { out } => {
            use anyhow::Context;
            use clap::CommandFactory;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            clap_mangen::generate_to(Cli::command(), &out)
                .with_context(|| format!("cannot write man pages into {}", out.display()))?;
            let n = std::fs::read_dir(&out)?.count();
            outln!("{n} man pages in {}", out.display());
            Ok(())
        }
        Command::Factory(FactoryCommand::Init {
            dir,
            family,
            curve,
            device_validity_days,
        }) => {
            factory::init(&dir, &family, alg(curve), device_validity_days)?;
            outln!(
                "factory created in {} (first family '{family}')",
                dir.display()
            );
            Ok(())
        }
        Command::Factory(FactoryCommand::Tls { dir, names }) => {
            let f = factory::tls(&dir, &names)?;
            outln!(
                "TLS certificate {} and key {} (issued by {})",
                f.cert.display(),
                f.key.display(),
                dir.join("root.pem").display()
            );
            Ok(())
        }
        Command::Factory(FactoryCommand::Family(FamilyCommand::New { name, dir, curve })) => {
            factory::family_new(&dir, &name, alg(curve))?;
            outln!("family '{name}' created");
            Ok(())
        }
        Command::Factory(FactoryCommand::Personalize {
            dir,
            family,
            count,
            out,
            profile,
            validity_days,
        }) => {
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let r = factory::personalize(
                &dir,
                &family,
                count,
                &out,
                &profile,
                validity_days,
                progress,
            )?;
            outln!(
                "{} chips personalized in {:.2} s ({:.0} chips/s){}; manifest {}",
                r.made,
                r.seconds,
                r.made as f64 / r.seconds.max(1e-9),
                if r.resumed_from > 0 {
                    format!(", resumed after {}", r.resumed_from)
                } else {
                    String::new()
                },
                out.join("manifest.jsonl").display()
            );
            outln!(
                "signed manifest {} (verify with {})",
                out.join(factory::SIGNATURE_FILE).display(),
                dir.join("batch.pub.pem").display()
            );
            Ok(())
        }
        Command::Device(args) => device_cmd::run(args),
        Command::Fleet(cmd) => fleet::run(cmd),
        Command::Bench(BenchCommand::Auth(a)) => bench_auth::run(a),
        Command::Cloud(cmd) => cloud_cmd::run(cmd),
        Command::Firmware(FirmwareCommand::Sign {
            key,
            factory,
            version,
            image,
            out,
        }) => firmware::sign_cmd(&key, factory.as_deref(), version, &image, out.as_deref()),
        Command::Bench(BenchCommand::Factory { count, dir }) => {
            bench::factory(count, dir.as_deref())
        }
        Command::Chip(ChipCommand::Key { out }) => {
            chip_cmd::new_key(&out)?;
            outln!("chip key written to {} (keep it secret)", out.display());
            Ok(())
        }
        Command::Chip(ChipCommand::New {
            out,
            curve,
            address,
            profile,
            key,
        }) => {
            let key = chip_cmd::chip_key(key.key_file.as_deref())?;
            let curve = match curve {
                CurveArg::P256 => CurveName::P256,
                CurveArg::P384 => CurveName::P384,
            };
            let c = chip_cmd::new_chip(&out, curve, address, profile == "encrypted", &key)?;
            outln!("chip {} written to {}", c.serial, out.display());
            outln!(
                "its CA certificate written to {}",
                chip_cmd::ca_path(&out).display()
            );
            outln!(
                "host keys written to {}",
                chip_cmd::host_keys_path(&out).display()
            );
            Ok(())
        }
        Command::Chip(ChipCommand::Inspect { image, json, key }) => {
            chip_cmd::inspect(&image, json, &chip_cmd::chip_key(key.key_file.as_deref())?)
        }
        Command::Chip(ChipCommand::Serve {
            images,
            listen,
            timing,
            faults,
            max_connections,
            idle_timeout,
            verbose,
            key,
        }) => {
            let key = chip_cmd::chip_key(key.key_file.as_deref())?;
            let limits = chip_cmd::Limits {
                max_connections,
                idle_timeout: std::time::Duration::from_secs(idle_timeout.max(1)),
                verbose,
            };
            chip_cmd::serve(&images, &listen, timing, faults, limits, &key)
        }
    }
}

fn main() -> ExitCode {
    // Known before parsing, so that usage errors too are JSON under --json.
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if json && e.use_stderr() {
                outln!(
                    "{}",
                    serde_json::json!({ "error": "usage", "message": e.to_string().trim() })
                );
            }
            e.exit()
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(out::report(&e, json)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
