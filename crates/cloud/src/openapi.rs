//! The OpenAPI 3 document served at `/openapi.json`.

use serde_json::{json, Value};

fn err() -> Value {
    json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn op(summary: &str, admin: bool, body: Option<Value>, ok: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "responses": { "200": { "description": "ok", "content": { "application/json": { "schema": ok } } }, "4XX": err(), "5XX": err() }
    });
    if let Some(b) = body {
        o["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": b } } });
    }
    if admin {
        o["security"] = json!([{ "admin": [] }]);
    }
    o
}

fn obj(props: &[(&str, &str)], required: &[&str]) -> Value {
    let mut p = serde_json::Map::new();
    for (k, t) in props {
        p.insert((*k).into(), json!({ "type": t }));
    }
    json!({ "type": "object", "properties": p, "required": required })
}

/// The document.
pub fn document() -> Value {
    let any = json!({ "type": "object" });
    json!({
        "openapi": "3.0.3",
        "info": { "title": "sesame cloud", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Device enrollment and challenge-response authentication. The device signs SHA-256 (P-256) or SHA-384 (P-384) of \"sesame/auth/v1\" || 0x00 || len(identity) (2 bytes BE) || identity || challenge || SHA-256(certificate DER)." },
        "components": {
            "securitySchemes": { "admin": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": obj(&[("error", "string"), ("message", "string")], &["error", "message"]) }
        },
        "paths": {
            "/healthz": { "get": op("Liveness and database health", false, None, any.clone()) },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format" } } } },
            "/v1/auth/challenge": { "post": op("Steps 1-3: send the device certificate (base64 DER), get a challenge", false,
                Some(obj(&[("certificate", "string"), ("chain", "array")], &["certificate"])),
                obj(&[("challenge_id", "string"), ("challenge", "string"), ("expires_at", "integer"), ("identity", "string")], &[])) },
            "/v1/auth/response": { "post": op("Steps 5-7: answer with the chip's signature (base64 R||S), get a session token", false,
                Some(obj(&[("challenge_id", "string"), ("signature", "string"), ("certificate", "string")], &["challenge_id", "signature"])),
                obj(&[("token", "string"), ("expires_at", "integer"), ("serial", "string")], &[])) },
            "/v1/session": { "get": op("The device behind a session token", false, None, obj(&[("serial", "string")], &[])) },
            "/v1/admin/roots": { "post": op("Trust a root CA (PEM or base64 DER)", true, Some(obj(&[("certificate", "string")], &["certificate"])), any.clone()) },
            "/v1/admin/families/code": { "post": op("Get a verification code to prove possession of a family key", true, None, obj(&[("code", "string"), ("expires_at", "integer")], &[])) },
            "/v1/admin/families": {
                "post": op("Enroll a family CA: certificate, code, and the DER ECDSA signature of the code by the family key", true,
                    Some(obj(&[("certificate", "string"), ("code", "string"), ("signature", "string")], &["certificate", "code", "signature"])), any.clone()),
                "get": op("List families", true, None, any.clone())
            },
            "/v1/admin/devices": {
                "post": op("Enroll one device certificate", true, Some(obj(&[("certificate", "string")], &["certificate"])), any.clone()),
                "get": op("List devices", true, None, any.clone())
            },
            "/v1/admin/devices/{serial}": { "get": op("Show a device", true, None, any.clone()) },
            "/v1/admin/revoke": { "post": op("Revoke a device (serial or fingerprint) or a family", true,
                Some(obj(&[("serial", "string"), ("fingerprint", "string"), ("family", "string")], &[])), any.clone()) },
            "/v1/admin/audit": { "get": op("Audit log by device and time (query: serial, since, until, limit)", true, None, any.clone()) },
            "/v1/telemetry": { "post": op("Device (bearer session token): an encrypted, chip-signed message; refused if seq is not above the last accepted", false,
                Some(obj(&[("seq", "integer"), ("time", "integer"), ("nonce", "string"), ("ciphertext", "string"), ("signature", "string")], &["seq", "time", "nonce", "ciphertext", "signature"])), any.clone()) },
            "/v1/devices/{serial}/telemetry": { "get": op("Accepted telemetry of a device (decrypted)", true, None, any.clone()) },
            "/v1/admin/devices/{serial}/telemetry": { "get": op("Same as /v1/devices/{serial}/telemetry", true, None, any.clone()) },
            "/v1/admin/devices/{serial}/commands": {
                "post": op("Queue a command; the cloud signs {serial, seq, expiry, body} with its command key", true, Some(obj(&[("body", "string"), ("ttl", "integer")], &["body"])), any.clone()),
                "get": op("Commands of a device with their receipts", true, None, any.clone())
            },
            "/v1/commands": { "get": op("Device: pending signed commands", false, None, any.clone()) },
            "/v1/commands/{seq}/receipt": { "post": op("Device: chip-signed receipt", false, Some(obj(&[("status", "string"), ("signature", "string")], &["status", "signature"])), any.clone()) },
            "/v1/admin/firmware": { "post": op("Publish a signed release (manifest + base64 image)", true, Some(obj(&[("manifest", "object"), ("image", "string")], &["manifest", "image"])), any.clone()) },
            "/v1/firmware/latest": { "get": op("Device: the newest release manifest", false, None, any.clone()) },
            "/v1/firmware/{version}": { "get": op("Device: a release manifest and image", false, None, any.clone()) },
            "/v1/usage": { "post": op("Device: chip-signed usage report", false, Some(obj(&[("seq", "integer"), ("remaining", "integer"), ("signature", "string")], &["seq", "remaining", "signature"])), any.clone()) },
            "/v1/admin/devices/{serial}/usage": { "get": op("Remaining uses reported by a device", true, None, any) }
        }
    })
}
