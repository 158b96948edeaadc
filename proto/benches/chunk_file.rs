//! `cargo bench -p sluice-proto --bench chunk_file`: writes and reads back a 50,000-row chunk
//! shaped like the extractor's output with each codec, with and without dictionaries, and
//! prints the time and size of each, for choosing `chunk_file::writer_properties`.

use arrow::array::{ArrayRef, Date32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::sync::Arc;
use std::time::Instant;

const ROWS: i64 = 50_000;
const ROUNDS: u32 = 20;

fn chunk() -> RecordBatch {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Schema::new(vec![
        Field::new("__sluice_key", DataType::Int64, false),
        Field::new("__sluice_watermark", ts, false),
        Field::new("external_id", DataType::Utf8, true),
        Field::new("first_name", DataType::Utf8, true),
        Field::new("loyalty_points", DataType::Int64, true),
        Field::new("birthday", DataType::Date32, true),
    ]);
    let ids = 1_000_000..1_000_000 + ROWS;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.clone())),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                ids.clone()
                    .map(|g| 1_704_067_200_000_000 + g / 100 * 1_000_000),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|g| format!("user-{g}")),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|g| format!("Name {g}")),
        )),
        Arc::new(Int64Array::from_iter_values(
            ids.clone().map(|g| g * 7 % 1000),
        )),
        Arc::new(Date32Array::from_iter_values(
            ids.map(|g| (g % 15000) as i32),
        )),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("valid batch")
}

fn main() {
    let batch = chunk();
    let codecs = [
        ("none", Compression::UNCOMPRESSED),
        ("snappy", Compression::SNAPPY),
        (
            "zstd(1)",
            Compression::ZSTD(ZstdLevel::try_new(1).expect("level")),
        ),
    ];
    println!("| codec | dictionary | write ms | read ms | bytes |");
    println!("|---|---|---|---|---|");
    for (name, codec) in codecs {
        for dictionary in [true, false] {
            let props = WriterProperties::builder()
                .set_compression(codec)
                .set_dictionary_enabled(dictionary)
                .build();
            let mut bytes = Vec::new();
            let started = Instant::now();
            for _ in 0..ROUNDS {
                bytes.clear();
                let mut writer =
                    ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props.clone()))
                        .expect("writer");
                writer.write(&batch).expect("write");
                writer.close().expect("close");
            }
            let write = started.elapsed() / ROUNDS;
            let file = bytes::Bytes::from(bytes);
            let started = Instant::now();
            for _ in 0..ROUNDS {
                let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone())
                    .expect("reader")
                    .build()
                    .expect("reader");
                for b in reader {
                    b.expect("batch");
                }
            }
            let read = started.elapsed() / ROUNDS;
            println!(
                "| {name} | {dictionary} | {:.1} | {:.1} | {} |",
                write.as_secs_f64() * 1e3,
                read.as_secs_f64() * 1e3,
                file.len()
            );
        }
    }
}
