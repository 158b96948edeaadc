//! The HTTP client of the CLI's admin commands when `--server` (`SLUICE_SERVER`) names a
//! coordinator: the token comes from `SLUICE_TOKEN`, the workspace is the token's, and
//! nothing is read from the database directly. Answers are the API's typed bodies.

use crate::settings::Settings;
use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A coordinator's API and the token to call it with.
pub struct Remote {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Remote {
    /// The API the settings name, or `None` to work on the database directly.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Remote>> {
        let Some(server) = &settings.server else {
            return Ok(None);
        };
        let token = settings
            .token
            .clone()
            .context("--server needs a token: set SLUICE_TOKEN (sluice tokens create)")?;
        Ok(Some(Remote {
            http: reqwest::Client::new(),
            base: server.trim_end_matches('/').to_string(),
            token,
        }))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request; a refusal becomes the API's own error: field, message and code.
    async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("reaching the Sluice API at {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(response).await)
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> anyhow::Result<T> {
        read_json(self.send(request).await?).await
    }

    /// The name of the token's workspace.
    pub async fn workspace(&self) -> anyhow::Result<String> {
        let me: Value = self.get("/v1/workspace").await?;
        Ok(me["name"].as_str().unwrap_or_default().to_string())
    }

    /// Checks that the token belongs to `workspace`.
    pub async fn check_workspace(&self, workspace: &str) -> anyhow::Result<()> {
        let own = self.workspace().await?;
        if own != workspace {
            anyhow::bail!("the token belongs to workspace {own:?}, not {workspace:?}");
        }
        Ok(())
    }

    /// `GET` a JSON body.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.json(self.request(Method::GET, path)).await
    }

    /// `GET` a JSON body, or `None` on 404.
    pub async fn get_found<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        let response = self
            .request(Method::GET, path)
            .send()
            .await
            .with_context(|| format!("reaching the Sluice API at {}", self.base))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => read_json(response).await.map(Some),
            _ => Err(refusal(response).await),
        }
    }

    /// `GET` a body as bytes.
    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let response = self.send(self.request(Method::GET, path)).await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// `POST`, with a JSON body when given.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let mut request = self.request(Method::POST, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.json(request).await
    }

    /// `POST` a text body (a spec).
    pub async fn post_text<T: DeserializeOwned>(
        &self,
        path: &str,
        text: &str,
    ) -> anyhow::Result<T> {
        self.json(self.request(Method::POST, path).body(text.to_string()))
            .await
    }

    /// `DELETE`, reading the answer's body.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.json(self.request(Method::DELETE, path)).await
    }

    /// `DELETE` of something that answers with no body.
    pub async fn delete_empty(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.request(Method::DELETE, path))
            .await
            .map(|_| ())
    }

    /// "Sync now" or a dry run, with the request's idempotency key.
    pub async fn trigger<T: DeserializeOwned>(
        &self,
        import: &str,
        dry_run: bool,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<T> {
        let mut request = self
            .request(Method::POST, &format!("/v1/imports/{import}/runs"))
            .json(&serde_json::json!({ "dry_run": dry_run }));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.json(request).await
    }
}

/// A refused request as the API's own error: field, message and code.
async fn refusal(response: Response) -> anyhow::Error {
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => return e.into(),
    };
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let field = value["field"]
        .as_str()
        .map(|f| format!("{f}: "))
        .unwrap_or_default();
    anyhow::anyhow!(
        "{field}{} ({})",
        value["message"].as_str().unwrap_or("the request failed"),
        value["code"].as_str().unwrap_or("error")
    )
}

/// A successful answer's JSON body.
async fn read_json<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let path = response.url().path().to_string();
    response
        .json()
        .await
        .with_context(|| format!("reading the API's answer to {path}"))
}
