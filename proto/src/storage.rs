//! Opens object stores: the one chunks are staged in (a local directory by default) and the
//! ones file and Delta connections read, given as paths or `s3://`, `gs://`, `az://` URLs whose
//! settings come from the environment and, for a connection's own credentials, from the URL's
//! `aws_*`, `google_*` and `azure_*` parameters.

use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use std::sync::Arc;

/// Why the object store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object store URL cannot be used.
    #[error("SLUICE_OBJECT_STORE_URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The local object store's directory could not be made.
    #[error("object store directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether a URL parameter configures the store (credentials, region, endpoint) rather than
/// naming a place in it.
fn is_store_option(key: &str) -> bool {
    ["aws_", "google_", "azure_"]
        .iter()
        .any(|p| key.to_ascii_lowercase().starts_with(p))
}

/// Settings of an object store, as `(key, value)` pairs object_store reads.
pub type StoreOptions = Vec<(String, String)>;

/// A store URL without its store parameters, and those parameters.
pub fn split_options(url: &str) -> (String, StoreOptions) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_string(), Vec::new());
    };
    if parsed.query().is_none() {
        return (url.to_string(), Vec::new());
    }
    let (options, rest): (StoreOptions, StoreOptions) = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .partition(|(k, _)| is_store_option(k));
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    (parsed.to_string(), options)
}

/// Opens the object store named by `url`: a path or `file://` URL (created if missing), or a
/// cloud URL configured by the usual `AWS_*`, `GOOGLE_*`, `AZURE_*` variables and, over them,
/// by the URL's own `aws_*`, `google_*`, `azure_*` parameters.
pub fn open(url: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let (base, options) = split_options(url);
    open_with(&base, options)
}

/// Opens the object store named by `url` (without parameters) with `options` over the
/// environment's.
pub fn open_with(url: &str, options: StoreOptions) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let bad = |reason: String| StorageError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let local_path = match url.strip_prefix("file://") {
        Some(path) => Some(path.to_string()),
        None if !url.contains("://") => Some(url.to_string()),
        None => None,
    };
    if let Some(path) = local_path {
        std::fs::create_dir_all(&path).map_err(|source| StorageError::Directory {
            path: path.clone(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&path).map_err(|e| bad(e.to_string()))?;
        return Ok(Arc::new(store));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let options = std::env::vars()
        .filter(|(key, _)| is_store_option(key))
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .chain(
            options
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v)),
        );
    let (store, prefix) =
        object_store::parse_url_opts(&parsed, options).map_err(|e| bad(e.to_string()))?;
    if prefix.as_ref().is_empty() {
        Ok(Arc::from(store))
    } else {
        Ok(Arc::new(crate::prefixed_store::Prefixed::new(
            store, prefix,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directories_are_created() {
        let dir = std::env::temp_dir().join(format!("sluice-storage-{}", uuid::Uuid::new_v4()));
        open(dir.to_str().unwrap()).unwrap();
        assert!(dir.is_dir());
        open(&format!("file://{}", dir.display())).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn store_parameters_are_split_from_the_url() {
        let (base, options) =
            split_options("s3://lake/exports?aws_access_key_id=AK&aws_secret_access_key=S%2BK&x=1");
        assert_eq!(base, "s3://lake/exports?x=1");
        assert_eq!(
            options,
            vec![
                ("aws_access_key_id".to_string(), "AK".to_string()),
                ("aws_secret_access_key".to_string(), "S+K".to_string())
            ]
        );
        assert_eq!(split_options("/data/lake").0, "/data/lake");
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_url() {
        let err = open("ftp://example/objects").err().unwrap().to_string();
        assert!(err.contains("ftp://example/objects"), "{err}");
    }
}
