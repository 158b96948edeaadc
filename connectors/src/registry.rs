//! The connector kinds this build knows, by the name specs use: each kind's URL check and how
//! a session on it is opened. Adding a kind is its folder plus one line in [`BUILTIN`].

use crate::connector::{Connector, Source};
use crate::endpoint::{Endpoint, HostKeyCheck};
use crate::error::SourceError;
use futures::future::BoxFuture;
use sluice_proto::ConnectionKind;

/// A session being opened on a source.
pub type Opening = BoxFuture<'static, Result<Box<dyn Connector>, SourceError>>;

/// One connector kind: its name, its URL check, and how a session is opened.
pub struct Kind {
    /// The name specs write as `kind:` and the control plane stores.
    pub name: &'static str,
    /// The database port a tunnel forwards to when the URL names none; `None` for kinds
    /// that cannot be reached through an SSH bastion.
    pub tunnel_port: Option<u16>,
    /// Checks a connection URL before anything connects, or says what is wrong with it
    /// (never echoing a secret).
    pub check_url: fn(&str) -> Result<(), String>,
    /// Opens a read-only session on the source the URL names.
    pub open: fn(String) -> Opening,
}

/// Every kind this build can read.
const BUILTIN: &[&Kind] = &[
    &crate::postgres::POSTGRES,
    &crate::postgres::REDSHIFT,
    &crate::mysql::MYSQL,
    &crate::files::FILES,
    &crate::files::DELTA,
    &crate::snowflake::SNOWFLAKE,
    &crate::bigquery::BIGQUERY,
    &crate::databricks::DATABRICKS,
];

/// A set of kinds to look connections up in.
#[derive(Clone)]
pub struct Registry {
    kinds: Vec<&'static Kind>,
}

impl Registry {
    /// The kinds this build knows.
    pub fn builtin() -> Self {
        Registry {
            kinds: BUILTIN.to_vec(),
        }
    }

    /// This set with `kind` added, replacing a kind of the same name.
    pub fn with(mut self, kind: &'static Kind) -> Self {
        self.kinds.retain(|k| k.name != kind.name);
        self.kinds.push(kind);
        self
    }

    /// The kinds' names, in the order they were registered.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name).collect()
    }

    /// The kind a connection names, or an error that lists the kinds there are.
    pub fn kind(&self, kind: &ConnectionKind) -> Result<&'static Kind, String> {
        self.kinds
            .iter()
            .find(|k| k.name == kind.as_str())
            .copied()
            .ok_or_else(|| {
                format!(
                    "unknown connection kind {:?}; the kinds are {}",
                    kind.as_str(),
                    self.names().join(", ")
                )
            })
    }

    /// Checks a connection URL of `kind` with that kind's own check.
    pub fn check_url(&self, kind: &ConnectionKind, url: &str) -> Result<(), String> {
        (self.kind(kind)?.check_url)(url)
    }

    /// Opens a read-only session on the source a connection describes.
    /// `credentials` are the connection's opened credentials ([`Endpoint`]): through its
    /// bastion only with the host key pinned.
    pub async fn open(
        &self,
        kind: &ConnectionKind,
        credentials: &str,
    ) -> Result<Source, SourceError> {
        self.open_checking(kind, credentials, HostKeyCheck::Pinned)
            .await
    }

    /// Opens a session as [`Registry::open`] does, checking a bastion's host key as `check`
    /// says; the source carries the host key the bastion presented.
    pub async fn open_checking(
        &self,
        kind: &ConnectionKind,
        credentials: &str,
        check: HostKeyCheck,
    ) -> Result<Source, SourceError> {
        let kind = self.kind(kind).map_err(SourceError::InvalidSpec)?;
        let endpoint = Endpoint::parse(credentials)?;
        let (url, host_key) = endpoint.route(kind, check).await?;
        Ok(Source::new((kind.open)(url).await?).with_host_key(host_key))
    }
}

/// Checks a connection URL with the kinds this build knows; an unknown kind lists them.
pub fn check_url(kind: &ConnectionKind, url: &str) -> Result<(), String> {
    Registry::builtin().check_url(kind, url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_kind_has_a_name_of_its_own() {
        let names = Registry::builtin().names();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn each_kind_checks_its_own_url_and_says_what_is_missing() {
        let check = |kind: &ConnectionKind, url: &str| check_url(kind, url);
        let err = check(&ConnectionKind::BIGQUERY, "bigquery://acme/crm").unwrap_err();
        assert!(err.contains("service account"), "{err}");
        let err = check(
            &ConnectionKind::DATABRICKS,
            "databricks://adb-1.azuredatabricks.net/abc",
        )
        .unwrap_err();
        assert!(err.contains("personal access token"), "{err}");
        let err = check(&ConnectionKind::BIGQUERY, "snowflake://u@acct/DB").unwrap_err();
        assert!(err.contains("bigquery://"), "{err}");
        let err = check(&ConnectionKind::POSTGRES, "mysql://h/db").unwrap_err();
        assert!(err.contains("postgres://"), "{err}");
        let err = check(&ConnectionKind::REDSHIFT, "mysql://h/db").unwrap_err();
        assert!(err.contains("a redshift connection"), "{err}");
        assert!(check(&ConnectionKind::POSTGRES, "postgres://u@h:5432/db").is_ok());
        assert!(check(&ConnectionKind::MYSQL, "postgres://u@h:5432/db").is_err());
        assert!(check(&ConnectionKind::DELTA, "s3://bucket/tables").is_ok());
        assert!(check(&ConnectionKind::FILES, "ftp://h/x").is_err());
    }

    #[test]
    fn an_unknown_kind_lists_the_kinds_there_are() {
        let err = check_url(&ConnectionKind::new("oracle"), "oracle://h/db").unwrap_err();
        assert!(err.contains("\"oracle\""), "{err}");
        for name in Registry::builtin().names() {
            assert!(err.contains(name), "{err}");
        }
    }
}
