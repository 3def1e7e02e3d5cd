//! The OpenAPI document served at `/openapi.json`, generated from the handlers' annotations and
//! the request and response types of `sesame-proto`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::OpenApi;

use crate::api as a;
use crate::data as d;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sesame cloud",
        description = "Device enrollment, challenge-response authentication and the device data path. The device signs SHA-256 (P-256) or SHA-384 (P-384) of \"sesame/auth/v1\" || 0x00 || len(identity) (2 bytes BE) || identity || challenge || SHA-256(certificate DER). Binary fields are standard base64, keys and hashes lowercase hex."
    ),
    paths(
        a::healthz, a::metrics, a::openapi, crate::info::handler,
        a::challenge, a::response, a::tls_login, a::session,
        a::add_root, a::roots, a::untrust_root, a::family_code, a::add_family, a::families,
        a::add_device, a::devices, a::device, a::revoke, a::unrevoke, a::audit,
        d::telemetry, d::admin_telemetry, d::device_telemetry, d::queue_command,
        d::admin_commands, d::pending_commands, d::receipt, d::publish_firmware,
        d::latest_firmware, d::firmware_image, d::usage, d::admin_usage,
        crate::batch::import, crate::batch::expiring,
    ),
    components(schemas(sesame_proto::ErrorBody)),
    modifiers(&Common),
    tags(
        (name = "device", description = "Called by devices (login, then a bearer session token)"),
        (name = "operator", description = "Called by operators (bearer operator token)"),
        (name = "service", description = "Health, metrics and this document"),
    )
)]
struct Doc;

/// What every operation shares: the two bearer schemes, and the error body of 4XX and 5XX.
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin", bearer());
        components.add_security_scheme("device", bearer());
        let error = ResponseBuilder::new()
            .description("Refused: `error` is a stable code, `message` a sentence")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build();
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for range in ["4XX", "5XX"] {
                    op.responses
                        .responses
                        .entry(range.into())
                        .or_insert_with(|| RefOr::T(error.clone()));
                }
            }
        }
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
