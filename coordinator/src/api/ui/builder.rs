//! The import builder at `/ui/imports/new` (`?from=NAME` edits a stored import): the source
//! previewed through its connection, key and watermark picked from its columns (with the
//! `(watermark, key)` index checked), identities and properties mapped with every previewed
//! value tried by the transformer's own plan, the schedule's next fire times, then saved as a
//! draft through the same service as `PUT /v1/imports/{name}` or downloaded as the YAML
//! `sluice apply` takes. Plain forms: every button posts the whole form and the page is
//! rendered again.

use super::draft::{Draft, PropertyRow, ALERT_RULES, IDENTITY_FIELDS, PROPERTY_TYPES};
use super::{check_form, Csrf, Viewer};
use crate::api::service::Service;
use crate::api::{ApiError, ApiState};
use crate::imports::FireTime;
use crate::spec::ImportDecl;
use crate::tokens::Role;
use arrow::record_batch::RecordBatch;
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sluice_transformer::trial::Trial;

/// Rows read to try the mapping on, and shown of them.
const ROWS_READ: usize = 1_000;
const ROWS_SHOWN: usize = 20;
/// Values listed per property: converted samples, and failures.
const SAMPLES: usize = 3;
const FAILURES: usize = 5;

/// The builder's address: `from` names an import to edit.
#[derive(Deserialize)]
pub struct BuilderQuery {
    from: Option<String>,
}

/// The builder, empty or showing a stored import.
pub async fn form(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    Query(query): Query<BuilderQuery>,
) -> Result<Html<String>, ApiError> {
    let service = Service::new(&state, caller);
    service.require(Role::Operator)?;
    let draft = match &query.from {
        Some(name) => {
            let view = service.show_import(name).await?;
            let import: ImportDecl = serde_json::from_value(view.spec)
                .map_err(|e| ApiError::invalid("from", format!("the stored spec: {e}")))?;
            Draft::of(&import)
        }
        None => Draft {
            data_type: "profiles".into(),
            source_kind: "table".into(),
            schedule_kind: "manual".into(),
            ..Default::default()
        },
    };
    let editing = query.from.is_some();
    Ok(Html(render(&service, &csrf, draft, editing, None).await?))
}

/// A button of the builder: `preview` (and `check`) show the page again with the source read
/// and the mapping tried; `save` writes the import as a draft; `yaml` downloads its spec.
pub async fn post(
    State(state): State<ApiState>,
    Viewer(caller, csrf): Viewer,
    headers: header::HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let draft = Draft::from_pairs(pairs);
    check_form(&headers, &csrf, &draft.csrf)?;
    let service = Service::new(&state, caller);
    service.require(Role::Operator)?;
    let editing = !draft.base.trim().is_empty();
    let problem = match draft.step.as_str() {
        "save" => match draft.import() {
            Ok(import) => {
                let name = import.name.clone();
                match service.put_import(import, false).await {
                    Ok(_) => {
                        let to = format!("/ui/imports/{}", urlencode(&name));
                        return Ok(Redirect::to(&to).into_response());
                    }
                    Err(e) if e.status == StatusCode::FORBIDDEN => return Err(e),
                    Err(e) => Some(field_message(&e)),
                }
            }
            Err(p) => Some(p.to_string()),
        },
        "yaml" => match draft
            .import()
            .map_err(|p| p.to_string())
            .and_then(|import| {
                checked(&service.caller.workspace, &import)?;
                crate::spec::import_file(&service.caller.workspace, &import).map(|t| (import, t))
            }) {
            Ok((import, text)) => return Ok(yaml(&import.name, text)),
            Err(p) => Some(p),
        },
        _ => None,
    };
    let page = render(&service, &csrf, draft, editing, problem).await?;
    Ok(Html(page).into_response())
}

/// A stored import's spec as a file `sluice apply -f` takes.
pub async fn download(
    State(state): State<ApiState>,
    Viewer(caller, _): Viewer,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let service = Service::new(&state, caller);
    let view = service.show_import(&name).await?;
    let import: ImportDecl = serde_json::from_value(view.spec)
        .map_err(|e| ApiError::invalid("import", format!("the stored spec: {e}")))?;
    let text = crate::spec::import_file(&service.caller.workspace, &import)
        .map_err(|e| ApiError::invalid("import", e))?;
    Ok(yaml(&name, text))
}

fn yaml(name: &str, text: String) -> Response {
    let file: String = name
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect();
    (
        [
            (
                header::CONTENT_TYPE,
                "application/yaml; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.yaml\""),
            ),
        ],
        text,
    )
        .into_response()
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// An API error as the page shows it: the field at fault, then why.
fn field_message(e: &ApiError) -> String {
    match &e.body.field {
        Some(field) => format!("{field}: {}", e.body.message),
        None => e.body.message.clone(),
    }
}

/// Checks the import as `apply` does before anything is written (its fields named as a
/// one-import request names them).
fn checked(workspace: &str, import: &ImportDecl) -> Result<(), String> {
    let spec = crate::spec::SpecFile {
        workspace: workspace.to_string(),
        event_retention: None,
        connections: Vec::new(),
        imports: vec![import.clone()],
        destinations: Vec::new(),
    };
    crate::spec::validate(&spec).map_err(|e| {
        let field = e.field.strip_prefix("imports[0].").unwrap_or(&e.field);
        format!("{field}: {}", e.reason)
    })
}

/// A selectable identity field and the column it is read from.
struct IdentityChoice {
    field: &'static str,
    column: String,
}

/// An import `after:` may name.
struct ImportChoice {
    name: String,
    checked: bool,
}

/// A property row and what its previewed values became.
struct RowView {
    column: String,
    name: String,
    kind: String,
    format: String,
    timezone: String,
    parse: Option<ParseView>,
}

/// A property's previewed values: how many converted, some that did, and those that did not.
struct ParseView {
    converted: usize,
    total: usize,
    samples: Vec<(String, String)>,
    failures: Vec<(usize, String)>,
    more_failures: usize,
}

/// The previewed rows.
struct PreviewView {
    columns: Vec<(String, String)>,
    rows: Vec<Vec<String>>,
    shown: usize,
    read: usize,
}

/// What the mapping would do to the previewed rows.
struct TrialView {
    summary: String,
    rejections: Vec<(usize, String, String, String)>,
}

/// The builder page.
#[derive(Template)]
#[template(path = "builder.html")]
struct BuilderPage<'a> {
    title: &'a str,
    refresh: bool,
    csrf: &'a str,
    editing: bool,
    can_save: bool,
    problem: Option<String>,
    draft: Draft,
    connections: Vec<String>,
    data_types: Vec<String>,
    schedule_kinds: Vec<String>,
    property_types: Vec<String>,
    columns: Vec<String>,
    preview: Option<PreviewView>,
    preview_problem: Option<String>,
    missing_index: Option<String>,
    identities: Vec<IdentityChoice>,
    rows: Vec<RowView>,
    trial: Option<TrialView>,
    events: bool,
    deletes: bool,
    upcoming: Vec<FireTime>,
    schedule_problem: Option<String>,
    imports: Vec<ImportChoice>,
    /// Each alert rule: its name, an example, and the form's value.
    alert_rules: Vec<(String, String, String)>,
}

/// Reads the source the form names, tries the mapping on it, and renders the page.
async fn render(
    service: &Service,
    csrf: &Csrf,
    mut draft: Draft,
    editing: bool,
    problem: Option<String>,
) -> Result<String, ApiError> {
    let connections: Vec<String> = service
        .list_connections()
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    if draft.connection.is_empty() {
        draft.connection = connections.first().cloned().unwrap_or_default();
    }
    let mut columns = Vec::new();
    let mut preview = None;
    let mut preview_problem = None;
    let mut missing_index = None;
    let mut batch = None;
    if let (Some(relation), false) = (draft.relation(), draft.connection.is_empty()) {
        let client = service.client().await?;
        let explored = crate::preview::explore(
            &**client,
            service.master_key()?,
            &service.caller.workspace,
            &draft.connection,
            relation,
            (draft.key.trim(), draft.watermark.trim()),
            ROWS_READ,
        )
        .await;
        match explored {
            Ok(found) => {
                columns = found.columns;
                missing_index = found.index.filter(|i| !i.present).map(|i| i.statement);
                match found.rows {
                    Ok(rows) => {
                        let fresh = draft.properties.is_empty()
                            && draft.identities.values().all(|c| c.is_empty());
                        if fresh && draft.base.is_empty() {
                            draft.suggest(&found.key, &found.watermark, &typed_columns(&rows));
                        }
                        draft.key = found.key;
                        draft.watermark = found.watermark;
                        preview = Some(preview_view(&rows));
                        batch = Some(rows);
                    }
                    Err(e) => {
                        draft.key = found.key;
                        draft.watermark = found.watermark;
                        preview_problem = Some(e);
                    }
                }
            }
            Err(e) => preview_problem = Some(e.to_string()),
        }
    }
    let import = draft.import();
    let mut problem = problem;
    let trial = match (&import, batch) {
        (Ok(import), Some(rows)) => {
            match sluice_transformer::trial::try_mapping(&import.mapping(), rows).await {
                Ok(trial) => Some(trial),
                Err(e) => {
                    problem.get_or_insert_with(|| e.to_string());
                    None
                }
            }
        }
        _ => None,
    };
    if let (Ok(import), None) = (&import, &problem) {
        if !columns.is_empty() {
            problem = checked(&service.caller.workspace, import).err();
        }
    }
    let (upcoming, schedule_problem) = upcoming(&draft);
    let rows = rows_view(&draft, trial.as_ref());
    let imports = service
        .list_imports()
        .await?
        .into_iter()
        .filter(|i| i.name != draft.name)
        .map(|i| ImportChoice {
            checked: draft.after.contains(&i.name),
            name: i.name,
        })
        .collect();
    let page = BuilderPage {
        title: "Import builder",
        refresh: false,
        csrf: &csrf.0,
        editing,
        can_save: service.caller.role >= Role::Admin,
        problem,
        connections,
        data_types: ["profiles", "events", "purchases", "user_deletes"]
            .map(String::from)
            .to_vec(),
        schedule_kinds: ["manual", "every", "cron", "at"].map(String::from).to_vec(),
        property_types: PROPERTY_TYPES.map(String::from).to_vec(),
        preview,
        preview_problem,
        missing_index,
        identities: IDENTITY_FIELDS
            .iter()
            .map(|field| IdentityChoice {
                field,
                column: draft.identities.get(*field).cloned().unwrap_or_default(),
            })
            .collect(),
        rows,
        trial: trial.as_ref().map(trial_view),
        events: matches!(draft.data_type.as_str(), "events" | "purchases"),
        deletes: draft.data_type == "user_deletes",
        upcoming,
        schedule_problem,
        imports,
        alert_rules: ALERT_RULES
            .iter()
            .map(|(rule, example)| {
                let value = draft.alerts.get(*rule).cloned().unwrap_or_default();
                (rule.to_string(), example.to_string(), value)
            })
            .collect(),
        columns,
        draft,
    };
    Ok(super::html::render(page))
}

/// The previewed columns' names and Arrow types, without the key and watermark copies.
fn typed_columns(rows: &RecordBatch) -> Vec<(String, String)> {
    rows.schema()
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with("__sluice"))
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect()
}

fn preview_view(rows: &RecordBatch) -> PreviewView {
    let shown = rows.num_rows().min(ROWS_SHOWN);
    let fields = rows.schema();
    let mut columns = Vec::new();
    let mut values: Vec<Vec<String>> = vec![Vec::new(); shown];
    for (i, field) in fields.fields().iter().enumerate() {
        if field.name().starts_with("__sluice") {
            continue;
        }
        columns.push((field.name().clone(), field.data_type().to_string()));
        let formatter = arrow::util::display::ArrayFormatter::try_new(
            rows.column(i).as_ref(),
            &arrow::util::display::FormatOptions::default().with_null("NULL"),
        );
        for (row, cells) in values.iter_mut().enumerate() {
            cells.push(match &formatter {
                Ok(f) => f.value(row).to_string(),
                Err(_) => "?".into(),
            });
        }
    }
    PreviewView {
        columns,
        rows: values,
        shown,
        read: rows.num_rows(),
    }
}

/// The form's property rows, each with what its previewed values became.
fn rows_view(draft: &Draft, trial: Option<&Trial>) -> Vec<RowView> {
    draft
        .rows()
        .into_iter()
        .map(|row: PropertyRow| {
            let parse = trial
                .and_then(|t| t.properties.iter().find(|p| p.name == row.name.trim()))
                .map(|p| {
                    let failures: Vec<(usize, String)> =
                        p.failures().map(|(r, v)| (r + 1, v.to_string())).collect();
                    ParseView {
                        converted: p.converted,
                        total: p.values.len(),
                        samples: p
                            .values
                            .iter()
                            .filter_map(|(text, value)| Some((text.clone()?, value.clone()?)))
                            .take(SAMPLES)
                            .collect(),
                        more_failures: failures.len().saturating_sub(FAILURES),
                        failures: failures.into_iter().take(FAILURES).collect(),
                    }
                });
            RowView {
                column: row.column,
                name: row.name,
                kind: row.kind,
                format: row.format,
                timezone: row.timezone,
                parse,
            }
        })
        .collect()
}

fn trial_view(trial: &Trial) -> TrialView {
    let rejected: u64 = trial.rejected_by_reason.values().sum();
    let reasons = trial
        .rejected_by_reason
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect::<Vec<_>>()
        .join(", ");
    let summary = match rejected {
        0 => format!("All {} previewed rows would be accepted.", trial.rows),
        _ => format!(
            "{rejected} of {} previewed rows would be rejected ({reasons}).",
            trial.rows
        ),
    };
    TrialView {
        summary,
        rejections: trial
            .rejections
            .iter()
            .take(10)
            .map(|r| {
                (
                    r.row + 1,
                    r.column.clone(),
                    r.value.clone().unwrap_or_else(|| "NULL".into()),
                    format!("{}: {}", r.reason, r.message),
                )
            })
            .collect(),
    }
}

/// The schedule's next five fire times, or why it cannot be used.
fn upcoming(draft: &Draft) -> (Vec<FireTime>, Option<String>) {
    let schedule = match draft.schedule_decl() {
        Ok(Some(schedule)) => schedule,
        Ok(None) => return (Vec::new(), None),
        Err(p) => return (Vec::new(), Some(p.to_string())),
    };
    match schedule.compile() {
        Ok(compiled) => (
            crate::imports::upcoming(&compiled, chrono::Utc::now(), 5),
            None,
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("schedule.{}: {}", e.field, e.reason)),
        ),
    }
}
