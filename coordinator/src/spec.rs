//! The spec file (the `sluice-spec` crate) checked with the connectors' URL checks: what the
//! CLI and the API parse and validate.

pub use sluice_spec::*;

use sluice_connectors::Registry;
use sluice_proto::ConnectionKind;

/// A connection's kind and URL checked by the connectors this build knows.
fn check_connection(kind: &ConnectionKind, url: &str) -> Result<(), ConnectionProblem> {
    let kind = Registry::builtin()
        .kind(kind)
        .map_err(ConnectionProblem::Kind)?;
    (kind.check_url)(url).map_err(ConnectionProblem::Url)
}

/// Parses and validates a spec file's text, `${NAME}` taken from this process's environment.
pub fn parse(text: &str) -> Result<SpecFile, SpecError> {
    sluice_spec::parse(text, check_connection)
}

/// Parses and validates a spec's text, `${NAME}` taken from `env` (the HTTP API passes an
/// empty one).
pub fn parse_with(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<SpecFile, SpecError> {
    sluice_spec::parse_with(text, env, check_connection)
}

/// Checks everything that can be checked without a source, connection URLs included.
pub fn validate(spec: &SpecFile) -> Result<(), SpecError> {
    sluice_spec::validate(spec, check_connection)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_url_is_checked_by_its_connector_and_named_by_its_field() {
        let spec = |kind: &str, url: &str| {
            format!(
                "workspace: demo\nconnections:\n  - name: wh\n    kind: {kind}\n    url: \"{url}\"\nimports: []\n"
            )
        };
        let err = super::parse(&spec("bigquery", "bigquery://acme/crm")).unwrap_err();
        assert_eq!(err.field, "connections[0].url");
        assert!(err.to_string().contains("service account"), "{err}");
        assert!(super::parse(&spec("postgres", "postgres://u@h:5432/db")).is_ok());
        let err = super::parse(&spec("oracle", "oracle://h/db")).unwrap_err();
        assert_eq!(err.field, "connections[0].kind");
        assert!(err.to_string().contains("postgres, redshift"), "{err}");
    }
}
