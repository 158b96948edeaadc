//! The operator HTTP API under `/v1`: JSON endpoints for workspaces and tokens, connections, destinations,
//! imports, runs, the error stream and profiles, each scoped to the bearer token's workspace, with the OpenAPI document
//! generated from the handlers and served at `/v1/openapi.json`; and the run listing web page
//! at `/ui`.

pub mod apply;
mod auth;
pub mod connections;
pub mod destinations;
mod error;
pub mod errors;
pub mod imports;
mod profiles;
pub mod runs;
pub mod service;
pub mod steering;
mod tokens;
mod ui;

pub use error::{ApiError, ApiQuery, ErrorBody, JsonBody, MaybeJson, TextBody};
use sluice_proto::Topology;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler reaches: the control plane and the broker runs are requested on.
#[derive(Clone)]
pub struct ApiState {
    /// The control plane.
    pub pool: deadpool_postgres::Pool,
    /// The profile and event stores, read by the profile lookups in the workspace's own.
    pub stores: std::sync::Arc<crate::stores::Stores>,
    /// The broker runs are requested on.
    pub amqp_url: String,
    /// The fleet's exchange and queue names.
    pub topology: Topology,
    /// Opens connection credentials to test, preview and rewind; seals applied ones.
    pub master_key: sluice_proto::secrets::MasterKey,
    /// Where runs' lineage is, read by the lineage queries.
    pub objects: std::sync::Arc<dyn object_store::ObjectStore>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice", description = "Operator API of the Sluice import fleet"),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the bearer-token scheme every endpoint uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// A request's query string from its fields, those unset left out: how the CLI sends a
/// filter over `--server`.
pub fn query_string<const N: usize>(pairs: [(&str, Option<String>); N]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value {
            out.append_pair(name, &value);
        }
    }
    out.finish()
}

/// The API's routes and the OpenAPI document describing exactly those routes.
pub fn routes() -> (axum::Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tokens::workspace))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(connections::list))
        .routes(routes!(destinations::list))
        .routes(routes!(
            connections::show,
            connections::delete,
            apply::put_connection
        ))
        .routes(routes!(connections::test))
        .routes(routes!(connections::preview))
        .routes(routes!(connections::keygen))
        .routes(routes!(connections::ssh_keygen))
        .routes(routes!(apply::apply))
        .routes(routes!(imports::list))
        .routes(routes!(imports::show, apply::put_import, imports::delete))
        .routes(routes!(imports::trigger))
        .routes(routes!(imports::pause))
        .routes(routes!(imports::resume))
        .routes(routes!(steering::preview))
        .routes(routes!(steering::stop))
        .routes(routes!(steering::resync))
        .routes(routes!(steering::rewind))
        .routes(routes!(steering::replay))
        .routes(routes!(runs::list))
        .routes(routes!(runs::show))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::errors))
        .routes(routes!(runs::errors_csv))
        .routes(routes!(runs::lineage))
        .routes(routes!(errors::list))
        .routes(routes!(profiles::lookup))
        .routes(routes!(profiles::events))
        .routes(routes!(profiles::history))
        .split_for_parts()
}

/// The whole HTTP service: the API, its OpenAPI document and the web page.
pub fn app(state: ApiState) -> axum::Router {
    let (router, openapi) = routes();
    router
        .merge(ui::routes())
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move { axum::Json(openapi) }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint; see /v1/openapi.json") })
        .with_state(state)
}
