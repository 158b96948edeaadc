//! The CLI's admin commands over the HTTP API, when `--server` (`SLUICE_SERVER`) names a
//! coordinator: the token comes from `SLUICE_TOKEN`, the workspace is the token's, and
//! nothing is read from the database directly.

use crate::settings::Settings;
use crate::trigger::{report, RunRequest};
use anyhow::Context;
use reqwest::Method;
use serde_json::Value;
use sluice_coordinator::runs::{status, RunSummary};
use std::time::{Duration, Instant};

/// What a request carries.
enum Body {
    /// A spec's text, as written.
    Text(String),
    Json(Value),
}

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

    async fn call(&self, method: Method, path: &str, body: Option<Body>) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        match body {
            Some(Body::Text(text)) => request = request.body(text),
            Some(Body::Json(value)) => request = request.json(&value),
            None => {}
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("reaching the Sluice API at {}", self.base))?;
        let ok = response.status().is_success();
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if ok {
            return Ok(value);
        }
        let field = value["field"]
            .as_str()
            .map(|f| format!("{f}: "))
            .unwrap_or_default();
        anyhow::bail!(
            "{field}{} ({})",
            value["message"].as_str().unwrap_or("the request failed"),
            value["code"].as_str().unwrap_or("error")
        )
    }

    /// Checks that the token belongs to `workspace`.
    async fn check_workspace(&self, workspace: &str) -> anyhow::Result<()> {
        let me = self.call(Method::GET, "/v1/workspace", None).await?;
        if me["name"] != workspace {
            anyhow::bail!(
                "the token belongs to workspace {}, not {workspace:?}",
                me["name"]
            );
        }
        Ok(())
    }

    /// `sluice apply -f`: sends the spec, `${NAME}` expanded from this environment.
    pub async fn apply(&self, text: &str, ready: bool) -> anyhow::Result<i32> {
        let text = sluice_coordinator::spec::interpolate(text, |name| std::env::var(name).ok())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let applied = self
            .call(
                Method::POST,
                &format!("/v1/apply?ready={ready}"),
                Some(Body::Text(text)),
            )
            .await?;
        for line in applied["lines"].as_array().into_iter().flatten() {
            println!("{}", line.as_str().unwrap_or_default());
        }
        Ok(0)
    }

    /// `sluice run` and `sluice imports replay`: requests the run and, with `--wait`, follows
    /// it until it ends.
    pub async fn run(&self, request: &RunRequest<'_>) -> anyhow::Result<i32> {
        self.check_workspace(request.workspace).await?;
        let body = match &request.replay {
            Some(window) => {
                let path = format!("/v1/imports/{}/replay", request.import);
                let window = serde_json::json!({ "from": window.from, "until": window.until });
                self.call(Method::POST, &path, Some(Body::Json(window)))
                    .await?
            }
            None => self.trigger(request).await?,
        };
        let run_id = body["run_id"].as_str().unwrap_or_default().to_string();
        if !request.wait {
            if request.json {
                println!("{body}");
            } else {
                println!("run {run_id} requested");
            }
            return Ok(0);
        }
        let started = Instant::now();
        let summary: RunSummary = loop {
            if let Ok(run) = self
                .call(Method::GET, &format!("/v1/runs/{run_id}"), None)
                .await
            {
                if status::is_final(run["status"].as_str().unwrap_or_default()) {
                    break serde_json::from_value(run)?;
                }
            } else if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("run {run_id} was not picked up; is a coordinator running?");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        report(&summary, request.json)
    }

    /// "Sync now" or a dry run, with the request's idempotency key.
    async fn trigger(&self, request: &RunRequest<'_>) -> anyhow::Result<Value> {
        let mut call = self
            .http
            .post(format!("{}/v1/imports/{}/runs", self.base, request.import))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "dry_run": request.dry_run }));
        if let Some(key) = request.idempotency_key {
            call = call.header("Idempotency-Key", key);
        }
        let response = call.send().await?;
        let accepted = response.status().is_success();
        let body: Value = response.json().await?;
        if !accepted {
            anyhow::bail!("{} ({})", body["message"], body["code"]);
        }
        Ok(body)
    }

    /// `sluice imports preview`: the source's columns, then each row as one JSON object.
    pub async fn preview(&self, workspace: &str, import: &str, rows: usize) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        let preview = self
            .call(
                Method::GET,
                &format!("/v1/imports/{import}/preview?rows={rows}"),
                None,
            )
            .await?;
        println!("schema:");
        for column in preview["columns"].as_array().into_iter().flatten() {
            println!(
                "  {}: {}",
                column["name"].as_str().unwrap_or_default(),
                column["type"].as_str().unwrap_or_default()
            );
        }
        for row in preview["rows"].as_array().into_iter().flatten() {
            println!("{row}");
        }
        Ok(0)
    }

    /// `sluice imports list`.
    pub async fn list_imports(&self, workspace: &str) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        for i in self
            .call(Method::GET, "/v1/imports", None)
            .await?
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "{}\t{}\t{}\t{}",
                i["name"].as_str().unwrap_or_default(),
                i["data_type"].as_str().unwrap_or_default(),
                i["state"].as_str().unwrap_or_default(),
                i["next_fire_at"].as_str().unwrap_or("-")
            );
        }
        Ok(0)
    }

    /// `sluice connections list`.
    pub async fn list_connections(&self, workspace: &str) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        for c in self
            .call(Method::GET, "/v1/connections", None)
            .await?
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "{}\t{}\tused by {} import(s)",
                c["name"].as_str().unwrap_or_default(),
                c["kind"].as_str().unwrap_or_default(),
                c["imports"]
            );
        }
        Ok(0)
    }

    /// `sluice connections test`.
    pub async fn test_connection(&self, workspace: &str, name: &str) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        let tested = self
            .call(Method::POST, &format!("/v1/connections/{name}/test"), None)
            .await?;
        if tested["ok"] == true {
            println!("{name}: ok");
            Ok(0)
        } else {
            println!(
                "{name}: {} ({})",
                tested["message"].as_str().unwrap_or_default(),
                tested["code"].as_str().unwrap_or_default()
            );
            Ok(1)
        }
    }

    /// `sluice imports pause|resume|stop|resync|rewind`: one POST to the import's action.
    pub async fn steer(
        &self,
        workspace: &str,
        import: &str,
        action: &str,
        body: Option<Value>,
    ) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        let answer = self
            .call(
                Method::POST,
                &format!("/v1/imports/{import}/{action}"),
                body.map(Body::Json),
            )
            .await?;
        println!("import {workspace}/{import}: {action}: {answer}");
        Ok(0)
    }

    /// `sluice imports show`: the import as the API shows it.
    pub async fn show(&self, workspace: &str, import: &str, json: bool) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        let view = self
            .call(Method::GET, &format!("/v1/imports/{import}"), None)
            .await?;
        if json {
            println!("{view}");
        } else {
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        Ok(0)
    }

    /// `sluice connections keygen`: prints the public key and the statement registering it.
    pub async fn keygen(&self, workspace: &str, name: &str) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        let pair = self
            .call(
                Method::POST,
                &format!("/v1/connections/{name}/keygen"),
                None,
            )
            .await?;
        println!(
            "public key: {}",
            pair["public_key"].as_str().unwrap_or_default()
        );
        println!("{}", pair["statement"].as_str().unwrap_or_default());
        Ok(0)
    }

    /// `sluice connections delete`.
    pub async fn delete_connection(&self, workspace: &str, name: &str) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        self.call(Method::DELETE, &format!("/v1/connections/{name}"), None)
            .await?;
        println!("connection {name} deleted");
        Ok(0)
    }

    /// `sluice imports delete`.
    pub async fn delete_import(&self, workspace: &str, import: &str) -> anyhow::Result<i32> {
        self.check_workspace(workspace).await?;
        self.call(Method::DELETE, &format!("/v1/imports/{import}"), None)
            .await?;
        println!("import {import} deleted");
        Ok(0)
    }

    /// `sluice runs errors`: a run's rejected rows, or all of them as CSV.
    pub async fn errors(&self, run: &str, csv: bool, limit: i64) -> anyhow::Result<i32> {
        if csv {
            let response = self
                .http
                .get(format!("{}/v1/runs/{run}/errors.csv", self.base))
                .bearer_auth(&self.token)
                .send()
                .await?;
            if !response.status().is_success() {
                anyhow::bail!("run {run}: {}", response.text().await?);
            }
            print!("{}", response.text().await?);
            return Ok(0);
        }
        let per_page = limit.clamp(1, 1000);
        let rows = self
            .call(
                Method::GET,
                &format!("/v1/runs/{run}/errors?per_page={per_page}"),
                None,
            )
            .await?;
        for e in rows.as_array().into_iter().flatten() {
            println!(
                "{}\t{}\t{}\t{}",
                e["row_key"].as_str().unwrap_or_default(),
                e["column"].as_str().unwrap_or_default(),
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            );
        }
        Ok(0)
    }
}
