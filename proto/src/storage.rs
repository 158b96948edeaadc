//! Opens the object store chunks are staged in: a local directory by default, or `s3://`,
//! `gs://`, `az://` URLs configured from the environment.

use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use std::sync::Arc;

/// Why the object store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("SLUICE_OBJECT_STORE_URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("object store directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

/// Opens the object store named by `url`: a path or `file://` URL (created if missing), or a
/// cloud URL whose credentials come from the usual `AWS_*`, `GOOGLE_*`, `AZURE_*` variables.
pub fn open(url: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
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
    let options = std::env::vars().filter_map(|(key, value)| {
        let key = key.to_ascii_lowercase();
        (key.starts_with("aws_") || key.starts_with("google_") || key.starts_with("azure_"))
            .then_some((key, value))
    });
    let (store, prefix) =
        object_store::parse_url_opts(&parsed, options).map_err(|e| bad(e.to_string()))?;
    if prefix.as_ref().is_empty() {
        Ok(Arc::from(store))
    } else {
        Ok(Arc::new(PrefixStore::new(store, prefix)))
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
    fn unknown_schemes_are_refused_with_the_url() {
        let err = open("ftp://example/objects").err().unwrap().to_string();
        assert!(err.contains("ftp://example/objects"), "{err}");
    }
}
