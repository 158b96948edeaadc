//! The one error body every endpoint answers with, `{code, message, field}`, and the HTTP
//! status each kind of failure gets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An API failure as the client sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthenticated`, `forbidden`, `not_found`, `invalid`,
    /// `too_large`, `conflict`, `unavailable`, `internal`.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error an endpoint returns.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status the error answers with.
    pub status: StatusCode,
    /// The body the client reads.
    pub body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
                field: None,
            },
        }
    }

    /// No valid bearer token.
    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "give a valid API token as `Authorization: Bearer <token>`",
        )
    }

    /// The token's role does not allow this.
    pub fn forbidden(needed: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs a token with the {needed} role"),
        )
    }

    /// A form posted without its page's token, or from another site.
    pub fn forged_form() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "post this form from its own page of this site (reload the page and try again)",
        )
    }

    /// Nothing by that name in the caller's workspace.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// The request is wrong in `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid", message);
        e.body.field = Some(field.into());
        e
    }

    /// The request conflicts with the object's state.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A service the fleet needs is down.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// Anything else; the detail goes to the log, not to the client.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("API request failed: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed; the coordinator's log says why",
        )
    }
}

/// As the CLI prints it: the field at fault first, then what went wrong.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(field) = &self.body.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{} ({})", self.body.message, self.body.code)
    }
}

impl std::error::Error for ApiError {}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::unavailable(format!("the control plane database is unreachable: {e}"))
    }
}

impl From<crate::stores::StoreError> for ApiError {
    fn from(e: crate::stores::StoreError) -> Self {
        ApiError::unavailable(format!("the workspace's store is unreachable: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        // An unread body is left on the connection: a client must not send its next request there.
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// A JSON request body whose problems answer with the API's error body, naming the field.
pub struct JsonBody<T>(pub T);

/// An optional JSON request body: `None` when the request has none.
pub struct MaybeJson<T>(pub Option<T>);

/// The dotted path of the field at fault (`schedule.cron`), or `fallback` for the whole input.
fn field_of(path: &serde_path_to_error::Path, fallback: &str) -> String {
    match path.to_string() {
        root if root == "." => fallback.to_string(),
        path => path,
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut document = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut document).map_err(|e| {
        let mut field = field_of(e.path(), "body");
        let message = e.inner().to_string();
        // A missing field is named in backticks by the message; the path is its parent's.
        if let Some(named) = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("missing field"))
        {
            field = match field.as_str() {
                "body" => named.to_string(),
                parent => format!("{parent}.{named}"),
            };
        }
        ApiError::invalid(field, format!("the JSON body: {message}"))
    })
}

/// A query string whose problems answer with the API's error body, naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(pairs)
            .map(ApiQuery)
            .map_err(|e| {
                let field = field_of(e.path(), "query");
                let message = e.inner().to_string();
                let field = message
                    .split('`')
                    .nth(1)
                    .filter(|_| field == "query" && message.contains("missing field"))
                    .map(str::to_string)
                    .unwrap_or(field);
                ApiError::invalid(field.clone(), format!("query parameter {field}: {message}"))
            })
    }
}

/// A request body refused before it was read: too large (413) or unreadable (400).
fn body_refused(e: axum::extract::rejection::BytesRejection) -> ApiError {
    let mut error = ApiError::invalid("body", e.body_text());
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        error.status = StatusCode::PAYLOAD_TOO_LARGE;
        error.body.code = "too_large";
    }
    error
}

async fn bytes<S: Send + Sync>(
    request: axum::extract::Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    use axum::extract::FromRequest;
    axum::body::Bytes::from_request(request, state)
        .await
        .map_err(body_refused)
}

/// A UTF-8 text request body (a spec file) whose problems answer with the API's error body.
pub struct TextBody(pub String);

impl<S: Send + Sync> axum::extract::FromRequest<S> for TextBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes(request, state).await?;
        String::from_utf8(bytes.to_vec())
            .map(TextBody)
            .map_err(|e| ApiError::invalid("body", format!("the body is not UTF-8 text: {e}")))
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes(request, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::invalid("body", "give a JSON body"));
        }
        parse(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S>
    for MaybeJson<T>
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeJson(None));
        }
        parse(&bytes).map(|v| MaybeJson(Some(v)))
    }
}
