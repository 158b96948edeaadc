//! API tokens: each belongs to one workspace and carries a role. A token is
//! `slc_<id>_<secret>`; only a SHA-256 hash of the secret is stored, the token is shown once,
//! and the hash is compared in constant time.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// What a token may do: viewers read, operators also run and steer imports, admins also
/// manage connections, imports and tokens.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, runs and steers imports.
    Operator,
    /// Everything, tokens and specs included.
    Admin,
}

impl Role {
    /// The role's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Reads a role's name.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling: the token's workspace and role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token the caller presented (nil for an operator on the host).
    pub token_id: Uuid,
    /// The workspace's id.
    pub workspace_id: i64,
    /// The workspace's name.
    pub workspace: String,
    /// What the caller may do.
    pub role: Role,
    /// The operator's login name when the command runs on the host, with database access
    /// instead of a token.
    pub on_host: Option<String>,
}

impl Caller {
    /// An operator on the host, acting on `workspace` with every right (database access is
    /// the fleet operator's already).
    pub fn host(workspace_id: i64, workspace: &str, user: &str) -> Caller {
        Caller {
            token_id: Uuid::nil(),
            workspace_id,
            workspace: workspace.to_string(),
            role: Role::Admin,
            on_host: Some(user.to_string()),
        }
    }

    /// How state changes and runs record this caller: `api:<token id>`, or the operator's
    /// login name on the host.
    pub fn actor(&self) -> String {
        match &self.on_host {
            Some(user) => user.clone(),
            None => format!("api:{}", self.token_id),
        }
    }
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The token's id (not its secret).
    pub id: Uuid,
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was last presented.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No workspace of that name.
    #[error("workspace {0:?} not found")]
    UnknownWorkspace(String),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The caller an operator on the host acts as in `workspace`, or `None` when there is no
/// such workspace.
pub async fn host_caller(
    client: &impl GenericClient,
    workspace: &str,
    user: &str,
) -> Result<Option<Caller>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT id FROM control.workspaces WHERE name = $1",
            &[&workspace],
        )
        .await?;
    Ok(row.map(|r| Caller::host(r.get(0), workspace, user)))
}

/// Makes a token for `workspace` (created if `create_workspace`); returns its id and the token,
/// which is not kept anywhere else.
pub async fn create(
    client: &impl GenericClient,
    workspace: &str,
    name: &str,
    role: Role,
    create_workspace: bool,
) -> Result<(Uuid, String), TokenError> {
    if create_workspace {
        client
            .execute(
                "INSERT INTO control.workspaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&workspace],
            )
            .await?;
    }
    let workspace_id: i64 = client
        .query_opt(
            "SELECT id FROM control.workspaces WHERE name = $1",
            &[&workspace],
        )
        .await?
        .ok_or_else(|| TokenError::UnknownWorkspace(workspace.to_string()))?
        .get(0);
    let id = Uuid::new_v4();
    let secret = hex(&rand::random::<[u8; 24]>());
    client
        .execute(
            "INSERT INTO control.api_tokens (id, workspace_id, name, role, secret_hash)
             VALUES ($1, $2, $3, $4, $5)",
            &[&id, &workspace_id, &name, &role.as_str(), &hash(&secret)],
        )
        .await?;
    Ok((id, format!("slc_{}_{secret}", id.simple())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller a bearer token names, or `None` for an unknown, malformed or revoked token.
/// The token's last use is recorded to the minute, so a busy client writes once a minute,
/// not once a request.
pub async fn authenticate(
    client: &impl GenericClient,
    token: &str,
) -> Result<Option<Caller>, tokio_postgres::Error> {
    let Some((id, secret)) = token
        .strip_prefix("slc_")
        .and_then(|rest| rest.split_once('_'))
    else {
        return Ok(None);
    };
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let Some(row) = client
        .query_opt(
            "SELECT t.secret_hash, t.workspace_id, w.name, t.role
               FROM control.api_tokens t JOIN control.workspaces w ON w.id = t.workspace_id
              WHERE t.id = $1 AND t.revoked_at IS NULL",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let stored: Vec<u8> = row.get(0);
    if !bool::from(stored.as_slice().ct_eq(&hash(secret))) {
        return Ok(None);
    }
    client
        .execute(
            "UPDATE control.api_tokens SET last_used_at = now()
              WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            &[&id],
        )
        .await?;
    Ok(Role::parse(row.get(3)).map(|role| Caller {
        token_id: id,
        workspace_id: row.get(1),
        workspace: row.get(2),
        role,
        on_host: None,
    }))
}

/// How long a web page session lasts.
const SESSION_HOURS: i32 = 12;

/// Opens a web page session for `caller`; returns the session id the browser keeps, which is
/// stored only as a hash and names the token, so revoking the token ends the session.
pub async fn open_session(
    client: &impl GenericClient,
    caller: &Caller,
) -> Result<String, tokio_postgres::Error> {
    let secret = hex(&rand::random::<[u8; 32]>());
    client
        .execute(
            "WITH gone AS (DELETE FROM control.ui_sessions WHERE expires_at < now())
             INSERT INTO control.ui_sessions (secret_hash, token_id, expires_at)
             VALUES ($1, $2, now() + make_interval(hours => $3))",
            &[&hash(&secret), &caller.token_id, &SESSION_HOURS],
        )
        .await?;
    Ok(secret)
}

/// The caller a live session id names, while its token is not revoked.
pub async fn session(
    client: &impl GenericClient,
    secret: &str,
) -> Result<Option<Caller>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT t.id, t.workspace_id, w.name, t.role
               FROM control.ui_sessions s
               JOIN control.api_tokens t ON t.id = s.token_id
               JOIN control.workspaces w ON w.id = t.workspace_id
              WHERE s.secret_hash = $1 AND s.expires_at > now() AND t.revoked_at IS NULL",
            &[&hash(secret)],
        )
        .await?;
    Ok(row.and_then(|row| {
        Role::parse(row.get(3)).map(|role| Caller {
            token_id: row.get(0),
            workspace_id: row.get(1),
            workspace: row.get(2),
            role,
            on_host: None,
        })
    }))
}

/// Ends a web page session.
pub async fn close_session(
    client: &impl GenericClient,
    secret: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM control.ui_sessions WHERE secret_hash = $1",
            &[&hash(secret)],
        )
        .await?;
    Ok(())
}

/// A workspace's tokens, newest first.
pub async fn list(
    client: &impl GenericClient,
    workspace_id: i64,
) -> Result<Vec<TokenView>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM control.api_tokens
              WHERE workspace_id = $1 ORDER BY created_at DESC",
            &[&workspace_id],
        )
        .await?
        .iter()
        .filter_map(|r| {
            Some(TokenView {
                id: r.get(0),
                name: r.get(1),
                role: Role::parse(r.get(2))?,
                created_at: r.get(3),
                last_used_at: r.get(4),
                revoked_at: r.get(5),
            })
        })
        .collect())
}

/// Revokes a token of the workspace; false when it has no such token.
pub async fn revoke(
    client: &impl GenericClient,
    workspace_id: i64,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .execute(
            "UPDATE control.api_tokens SET revoked_at = coalesce(revoked_at, now())
              WHERE id = $1 AND workspace_id = $2",
            &[&id, &workspace_id],
        )
        .await?
        == 1)
}
