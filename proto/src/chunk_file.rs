//! How chunk objects are written as Parquet: one set of writer properties for every stage, so
//! the codec and encodings chosen by measurement (`cargo bench -p sluice-proto --bench
//! chunk_file`, results in benches/README.md) hold for the whole pipeline.

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Rows per Parquet row group: a chunk's rows are buffered (encoded) up to this many before
/// a row group is flushed, which bounds a writer's memory whatever the chunk's size, and a
/// reader fetches a row group's columns at a time. At 65,536 rows a 50,000-row chunk was one
/// row group, held whole by the extractor's and the transformer's writers and the
/// transformer's reader: 8,192 took the transformer's peak on wide rows from 122 to 95 MiB and
/// the extractor's from 78 to 58, at the same speed (benches/README.md).
pub const ROW_GROUP_ROWS: usize = 8 * 1024;

/// Writer properties for chunk objects: zstd level 1 pages and no dictionaries. Chunk columns
/// are mostly unique values (keys, identities, names), for which building a dictionary costs
/// more time than it saves space (writing takes half as long without); zstd at level 1 makes
/// objects a quarter the size Snappy does for a few milliseconds more per chunk.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}
