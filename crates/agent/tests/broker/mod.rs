//! A real Mosquitto for tests: started per test from a generated configuration on a free
//! loopback port, in a temporary directory, with TLS (server certificate from a test CA),
//! clients authenticated by certificate (the certificate's CN is the user name) and, unless
//! asked otherwise, an ACL that confines each device to the topics under its own serial.
//!
//! Without a `mosquitto` binary the tests are skipped with a message, except under `CI=true`,
//! where that is a failure (`.ci/run` installs it).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The cloud's broker user name (the CN of its client certificate).
pub const CLOUD_USER: &str = "sesame-cloud";

/// The ACL: a device reads and writes only under its own serial; the cloud reads telemetry.
pub const ACL: &str = "\
pattern readwrite sesame/v1/devices/%u/#

user sesame-cloud
topic read sesame/v1/devices/+/telemetry
";

/// A running broker; killed when dropped.
pub struct Broker {
    child: Child,
    port: u16,
    conf: PathBuf,
    /// `mqtts://localhost:PORT`.
    pub url: String,
    /// The CA of the broker's server certificate (DER): clients trust it.
    pub server_ca: Vec<u8>,
    /// How the cloud connects.
    pub cloud: sesame_cloud::mqtt::MqttConfig,
    dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `mosquitto` binary, if installed (Debian puts it in /usr/sbin).
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn issue(
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
    names: Vec<String>,
    cn: &str,
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(names).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn spawn(bin: &Path, conf: &Path) -> Child {
    Command::new(bin)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Broker {
    /// Starts a broker that accepts client certificates issued by `device_cas` (DER: the
    /// device roots and families) or by its own test CA (the cloud's); with `acl`, each device
    /// is confined to its own topics. `None` (with a message) when Mosquitto is not installed
    /// outside CI.
    pub fn start(device_cas: &[&[u8]], acl: bool) -> Option<Broker> {
        let Some(bin) = binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("mosquitto is not installed (CI installs it: apt-get install mosquitto)");
            }
            eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "sesame test broker CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let (server, server_key) = issue(
            &ca,
            &ca_key,
            vec!["localhost".into()],
            "localhost",
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (cloud, cloud_key) = issue(
            &ca,
            &ca_key,
            Vec::new(),
            CLOUD_USER,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        let mut clients = ca.pem();
        for der in device_cas {
            clients.push_str(&sesame_pki::to_pem("CERTIFICATE", der));
        }
        let write = |name: &str, text: &str| {
            std::fs::write(d.join(name), text).unwrap();
            d.join(name)
        };
        let port = free_port();
        let mut conf = format!(
            "per_listener_settings false\nallow_anonymous false\npersistence false\n\
             log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\nlog_type debug\n\
             listener {port} 127.0.0.1\ncafile {clients}\ncertfile {server}\nkeyfile {key}\n\
             require_certificate true\nuse_identity_as_username true\n",
            log = d.join("mosquitto.log").display(),
            clients = write("clients.pem", &clients).display(),
            server = write("server.pem", &server).display(),
            key = write("server.key", &server_key).display(),
        );
        if acl {
            conf.push_str(&format!("acl_file {}\n", write("acl", ACL).display()));
        }
        // As root, Mosquitto would drop to the `mosquitto` user, who cannot read this directory.
        if std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        }) {
            conf.push_str("user root\n");
        }
        let conf_path = write("mosquitto.conf", &conf);
        let child = spawn(&bin, &conf_path);
        let mut broker = Broker {
            child,
            port,
            conf: conf_path,
            url: format!("mqtts://localhost:{port}"),
            server_ca: ca.der().to_vec(),
            cloud: sesame_cloud::mqtt::MqttConfig {
                url: format!("mqtts://localhost:{port}"),
                ca: write("ca.pem", &ca.pem()),
                cert: write("cloud.pem", &cloud),
                key: write("cloud.key", &cloud_key),
                client_id: CLOUD_USER.into(),
            },
            dir,
        };
        broker.wait_listening();
        Some(broker)
    }

    /// Kills the broker (SIGKILL: it loses every session, nothing is persisted) and starts it
    /// again on the same port.
    pub fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = spawn(&binary().unwrap(), &self.conf);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let port = self.port;
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mosquitto exited ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("mosquitto did not listen on {port}:\n{}", self.log());
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// The directory with its configuration, certificates and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
