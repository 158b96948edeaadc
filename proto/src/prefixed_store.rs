//! An object store under a key prefix whose answers always name objects relative to the
//! prefix. object_store 0.13's `PrefixStore` returns `get_opts` (and so `head`) metadata with
//! the prefix left on the location (apache/arrow-rs-object-store#664); DataFusion reads a file
//! at the location `head` gave, which then resolved to `prefix/prefix/key` and was never found
//! on S3, GCS or Azure. This wrapper answers with the location the caller asked for.

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use std::ops::Range;

/// A store under a prefix of another.
#[derive(Debug)]
pub struct Prefixed {
    inner: PrefixStore<Box<dyn ObjectStore>>,
}

impl Prefixed {
    /// `store` under `prefix`.
    pub fn new(store: Box<dyn ObjectStore>, prefix: Path) -> Prefixed {
        Prefixed {
            inner: PrefixStore::new(store, prefix),
        }
    }
}

impl std::fmt::Display for Prefixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl ObjectStore for Prefixed {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut got = self.inner.get_opts(location, options).await?;
        got.meta.location = location.clone();
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn an_object_is_read_again_at_the_location_its_head_gives() {
        let store = Prefixed::new(Box::new(InMemory::new()), Path::from("fleet"));
        let key = Path::from("ws-1/chunk-000000/extracted.parquet");
        store
            .put(&key, PutPayload::from_static(b"rows"))
            .await
            .unwrap();
        let meta = store.head(&key).await.unwrap();
        assert_eq!(meta.location, key);
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"rows");
        let listed: Vec<ObjectMeta> = futures::TryStreamExt::try_collect(store.list(None))
            .await
            .unwrap();
        assert_eq!(listed[0].location, key);
    }
}
