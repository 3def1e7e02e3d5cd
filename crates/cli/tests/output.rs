//! One JSON vocabulary: `chip inspect --json` and `device info --json` describe the same chip
//! with the same names and encodings (snake_case keys, hex bytes, RFC 3339 times).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ok, sesame};
use serde_json::Value;

fn snake_case_everywhere(v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                assert!(
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{at}.{k} is not snake_case"
                );
                snake_case_everywhere(x, &format!("{at}.{k}"));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| snake_case_everywhere(x, at)),
        _ => {}
    }
}

#[test]
fn chip_inspect_and_device_info_share_one_vocabulary() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(sesame(&["chip", "key", "--out", "k"], d));
    ok(sesame(
        &["chip", "new", "--out", "c.chip", "--key-file", "k"],
        d,
    ));
    let json =
        |args: &[&str]| -> Value { serde_json::from_slice(&ok(sesame(args, d)).stdout).unwrap() };
    let chip = json(&["chip", "inspect", "c.chip", "--key-file", "k", "--json"]);
    let dev = json(&[
        "device",
        "--image",
        "c.chip",
        "--key-file",
        "k",
        "--json",
        "info",
    ]);
    snake_case_everywhere(&chip, "chip");
    snake_case_everywhere(&dev, "device");
    for k in [
        "address",
        "serial",
        "life_cycle",
        "zones",
        "key_usage_limit",
        "certificate",
    ] {
        assert_eq!(chip[k], dev[k], "{k} differs");
    }
    assert_eq!(chip["host_keys"]["present"], dev["host_keys"]["present"]);
    let (ck, dk) = (&chip["private_keys"][0], &dev["private_keys"][0]);
    for k in ["slot", "present", "curve", "mode", "usage"] {
        assert_eq!(ck[k], dk[k], "private_keys[0].{k} differs");
    }
    // Bytes as hex: the public key is the certificate's.
    let pk = ck["public_key"].as_str().unwrap();
    assert!(
        pk.len() == 130 && pk.starts_with("04") && hex::decode(pk).is_ok(),
        "{pk}"
    );
    assert_eq!(chip["certificate"]["public_key"], pk);
    // Times as RFC 3339.
    for k in ["not_before", "not_after"] {
        let t = chip["certificate"][k].as_str().unwrap();
        assert!(
            t.len() == 20 && t.ends_with('Z') && &t[10..11] == "T",
            "{k}: {t}"
        );
    }
}
