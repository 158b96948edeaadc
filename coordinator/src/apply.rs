//! Applies a spec file: tests every connection and source first, then creates or updates the
//! workspace, connections and imports in one transaction, so a bad spec writes nothing.

use crate::spec::{ImportDecl, SpecError, SpecFile};
use sluice_connectors::{Endpoint, HostKeyCheck, Source, SourceError, SourceSpec};
use sluice_proto::secrets::{MasterKey, Sealed};
use sluice_proto::ConnectionKind;
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// Why a spec could not be applied; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The spec is invalid.
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// A connection failed its test.
    #[error("{field}: connection {name}: {error}")]
    Connection {
        /// The connection's place in the spec (`connections[0]`).
        field: String,
        /// Its name.
        name: String,
        /// What failed.
        error: SourceError,
    },
    /// An import's source failed its check.
    #[error("{field}: import {name}: {error}")]
    Source {
        /// The import's place in the spec (`imports[0]`).
        field: String,
        /// Its name.
        name: String,
        /// What failed.
        error: SourceError,
    },
    /// The control plane failed.
    #[error("control plane: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// A connection's stored credentials could not be opened.
    #[error("stored connection {name:?}: {reason}")]
    Secret {
        /// The connection.
        name: String,
        /// Why.
        reason: String,
    },
}

/// How to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// New imports skip `draft` and are ready (or scheduled) at once, for specs already dry-run
    /// elsewhere (a staging fleet, CI).
    pub ready: bool,
}

/// What applying did, one line per object.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// One line per connection, destination and import: what applying did to it.
    pub lines: Vec<String>,
}

/// Finds a workspace's id by name.
pub async fn workspace_id(
    client: &Client,
    name: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT id FROM control.workspaces WHERE name = $1",
            &[&name],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Opens a stored connection's URL.
pub fn open_credentials(
    key: &MasterKey,
    name: &str,
    sealed: &serde_json::Value,
) -> Result<String, ApplyError> {
    let secret = |reason: String| ApplyError::Secret {
        name: name.to_string(),
        reason,
    };
    let sealed: Sealed =
        serde_json::from_value(sealed.clone()).map_err(|e| secret(e.to_string()))?;
    let bytes = key.open(&sealed).map_err(|e| secret(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| secret(e.to_string()))
}

/// A stored connection's kind and opened URL; `None` when the workspace has none by that name.
pub(crate) async fn stored_connection_url(
    client: &impl tokio_postgres::GenericClient,
    key: &MasterKey,
    workspace: &str,
    name: &str,
) -> Result<Option<(ConnectionKind, String)>, ApplyError> {
    let row = client
        .query_opt(
            "SELECT c.credentials, c.kind FROM control.connections c
               JOIN control.workspaces w ON w.id = c.workspace_id
              WHERE w.name = $1 AND c.name = $2",
            &[&workspace, &name],
        )
        .await?;
    row.map(|r| {
        let kind = ConnectionKind::new(r.get::<_, String>(1));
        Ok((kind, open_credentials(key, name, &r.get(0))?))
    })
    .transpose()
}

/// The first column an import names that the source does not have (when the source lists
/// its columns), with the field naming it and the source's columns, closest first.
fn missing_column(field: &str, import: &ImportDecl, columns: &[String]) -> Result<(), SpecError> {
    if columns.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    for (at, column) in import.column_fields() {
        // Warehouses fold unquoted names (Snowflake reports `ID` for `id`): a name that differs
        // only in case is left to the source's own check.
        if column == sluice_connectors::files::MODIFIED
            || names.iter().any(|n| n.eq_ignore_ascii_case(column))
        {
            continue;
        }
        let listed = sluice_spec::suggest::closest_first(column, &names);
        let more = listed.len().saturating_sub(20);
        let mut list = listed.into_iter().take(20).collect::<Vec<_>>().join(", ");
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        let source = match &import.source {
            sluice_proto::SourceRelation::Table(t) => format!("table {t}"),
            sluice_proto::SourceRelation::Query(_) => "the query's result".to_string(),
        };
        return Err(SpecError {
            field: format!("{field}.{at}"),
            reason: format!(
                "{source} has no column {column:?}; its columns, closest first: {list}"
            ),
        });
    }
    Ok(())
}

/// The source an import reads, as the extractor sees it.
pub fn source_spec(import: &ImportDecl) -> SourceSpec {
    // A mapped key or watermark column is read again under its own name, so it maps like any
    // other column; only `_modified`, the files' pseudo-column no file holds, stays out.
    let mut columns = import.mapping().columns();
    columns.retain(|c| c != sluice_connectors::files::MODIFIED);
    SourceSpec {
        relation: import.source.clone(),
        key_column: import.key.clone(),
        watermark_column: import.watermark.clone(),
        columns,
    }
}

/// Checks that the destination an import names is declared in the spec or stored in the
/// workspace, and can take the import (the spec's own were checked with the spec).
async fn check_destination(
    client: &Client,
    spec: &SpecFile,
    field: &str,
    import: &ImportDecl,
) -> Result<(), ApplyError> {
    let Some(name) = &import.destination else {
        return Ok(());
    };
    if spec.destinations.iter().any(|d| &d.name == name) {
        return Ok(());
    }
    match crate::destinations::stored_kind(client, &spec.workspace, name).await? {
        Some(kind) => Ok(crate::spec::destinations::check_import(
            field, import, kind,
        )?),
        None => Err(ApplyError::Spec(SpecError {
            field: format!("{field}.destination"),
            reason: format!(
                "no destination named {name:?} in this file or in workspace {:?}",
                spec.workspace
            ),
        })),
    }
}

/// Tests, then writes, everything the spec declares.
pub async fn apply(
    client: &mut Client,
    key: &MasterKey,
    spec: &SpecFile,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    crate::spec::validate(spec)?;
    // Each connection's credentials as they will be sealed.
    let mut urls: BTreeMap<String, (ConnectionKind, Endpoint)> = BTreeMap::new();
    for (i, c) in spec.connections.iter().enumerate() {
        let stored = stored_connection_url(client, key, &spec.workspace, &c.name).await?;
        let mut endpoint = crate::connections::declared(c, stored);
        let failed = |error| ApplyError::Connection {
            field: format!("connections[{i}]"),
            name: c.name.clone(),
            error,
        };
        // A connection through a bastion cannot be connected to before its key is generated.
        if endpoint.keyed() {
            let text = endpoint.to_text();
            let source = Source::open_checking(&c.kind, &text, HostKeyCheck::Learn)
                .await
                .map_err(failed)?;
            source.test().await.map_err(failed)?;
            if let (Some(ssh), Some(presented)) = (endpoint.ssh.as_mut(), source.host_key()) {
                ssh.host_key = Some(presented.to_string());
            }
        }
        urls.insert(c.name.clone(), (c.kind.clone(), endpoint));
    }
    for (i, import) in spec.imports.iter().enumerate() {
        check_destination(client, spec, &format!("imports[{i}]"), import).await?;
    }
    let mut unchecked = Vec::new();
    for (i, import) in spec.imports.iter().enumerate() {
        let field = format!("imports[{i}]");
        let (kind, endpoint) = match urls.get(&import.connection) {
            Some(found) => found.clone(),
            None => stored_connection_url(client, key, &spec.workspace, &import.connection)
                .await?
                .map(|(kind, text)| {
                    let endpoint = Endpoint::parse(&text).map_err(|e| ApplyError::Secret {
                        name: import.connection.clone(),
                        reason: e.to_string(),
                    })?;
                    Ok::<_, ApplyError>((kind, endpoint))
                })
                .transpose()?
                .ok_or_else(|| {
                    ApplyError::Spec(SpecError {
                        field: format!("{field}.connection"),
                        reason: format!(
                            "no connection named {:?} in this file or in workspace {:?}",
                            import.connection, spec.workspace
                        ),
                    })
                })?,
        };
        if !endpoint.keyed() {
            // Checked by its dry run, once the bastion accepts the connection's key.
            unchecked.push(import.name.clone());
            continue;
        }
        let source_error = |error| ApplyError::Source {
            field: field.clone(),
            name: import.name.clone(),
            error,
        };
        let source = Source::open(&kind, &endpoint.to_text())
            .await
            .map_err(source_error)?;
        let read = source_spec(import);
        let columns = source.columns(&read).await.map_err(source_error)?;
        missing_column(&field, import, &columns)?;
        source.describe(&read).await.map_err(source_error)?;
    }

    let mut report = ApplyReport::default();
    let retention_days: Option<i32> = spec
        .event_retention
        .map(|d| (d.as_secs() / 86_400).min(i32::MAX as u64) as i32);
    let tx = client.transaction().await?;
    let workspace: i64 = tx
        .query_one(
            "INSERT INTO control.workspaces (name, event_retention_days) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET event_retention_days = EXCLUDED.event_retention_days
             RETURNING id",
            &[&spec.workspace, &retention_days],
        )
        .await?
        .get(0);
    for c in &spec.connections {
        // The tested credentials: a stored key pair carried over, a bastion's host key pinned.
        let url = urls
            .get(&c.name)
            .map_or_else(|| c.url.clone(), |(_, endpoint)| endpoint.to_text());
        let sealed =
            serde_json::to_value(key.seal(url.as_bytes())).expect("sealed value serializes");
        let kind = serde_json::to_value(&c.kind).expect("kind serializes");
        let inserted: bool = tx
            .query_one(
                "INSERT INTO control.connections (workspace_id, name, kind, credentials)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, name) DO UPDATE
                    SET kind = EXCLUDED.kind, credentials = EXCLUDED.credentials, updated_at = now()
                 RETURNING xmax = 0",
                &[&workspace, &c.name, &kind.as_str(), &sealed],
            )
            .await?
            .get(0);
        report.lines.push(format!(
            "connection {}: {}",
            c.name,
            if inserted { "created" } else { "updated" }
        ));
        let keyed = urls.get(&c.name).is_none_or(|(_, e)| e.keyed());
        if let (Some(ssh), false) = (&c.ssh, keyed) {
            report.lines.push(format!(
                "connection {name}: reaches its database through the SSH bastion {host}:{port}, and has no key yet: \
                 run `sluice connections keygen {name} --ssh --workspace {workspace}`, add the public key it prints \
                 to {user}'s authorized_keys on the bastion, then `sluice connections test {name} --workspace {workspace}`",
                name = c.name,
                host = ssh.host,
                port = ssh.port,
                user = ssh.user,
                workspace = spec.workspace,
            ));
        }
    }
    for d in &spec.destinations {
        let created = crate::destinations::upsert(&tx, key, workspace, d).await?;
        report.lines.push(format!(
            "destination {}: {}",
            d.name,
            if created { "created" } else { "updated" }
        ));
    }
    for (i, import) in spec.imports.iter().enumerate() {
        let connection: i64 = tx
            .query_one(
                "SELECT id FROM control.connections WHERE workspace_id = $1 AND name = $2",
                &[&workspace, &import.connection],
            )
            .await?
            .get(0);
        let existing = tx
            .query_opt(
                "SELECT data_type, spec FROM control.imports WHERE workspace_id = $1 AND name = $2",
                &[&workspace, &import.name],
            )
            .await?;
        let body = serde_json::to_value(import).expect("import spec serializes");
        match existing {
            Some(row) => {
                let data_type: String = row.get(0);
                if data_type != import.data_type.as_str() {
                    return Err(ApplyError::Spec(SpecError {
                        field: format!("imports[{i}].data_type"),
                        reason: format!(
                            "is {data_type} and cannot change after creation; create a new import"
                        ),
                    }));
                }
                let old: serde_json::Value = row.get(1);
                let old_schedule = serde_json::from_value::<ImportDecl>(old.clone())
                    .ok()
                    .and_then(|i| i.schedule);
                tx.execute(
                    "UPDATE control.imports SET connection_id = $3, spec = $4, updated_at = now()
                      WHERE workspace_id = $1 AND name = $2",
                    &[&workspace, &import.name, &connection, &body],
                )
                .await?;
                if old_schedule != import.schedule {
                    crate::imports::reschedule(&tx, workspace, import, "apply").await?;
                }
                let what = if old == body { "unchanged" } else { "updated" };
                report.lines.push(format!("import {}: {what}", import.name));
            }
            None => {
                tx.execute(
                    "INSERT INTO control.imports (workspace_id, name, connection_id, data_type, spec, state)
                     VALUES ($1, $2, $3, $4, $5, 'draft')",
                    &[&workspace, &import.name, &connection, &import.data_type.as_str(), &body],
                )
                .await?;
                if options.ready {
                    crate::imports::promote(&tx, workspace, &import.name, "apply --ready").await?;
                }
                report
                    .lines
                    .push(format!("import {}: created", import.name));
            }
        }
    }
    for import in &spec.imports {
        crate::notify::sync_targets(&tx, key, workspace, import).await?;
    }
    for name in unchecked {
        report.lines.push(format!(
            "import {name}: its source is not checked until its connection's SSH key is accepted; its dry run checks it"
        ));
    }
    tx.commit().await?;
    Ok(report)
}
