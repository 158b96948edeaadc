//! The staging COPY: a chunk's staged rows copied into the staging tables, encoded in
//! PostgreSQL's binary COPY format by the driver's own `ToSql` and sent in large messages.
//! The driver's `BinaryCopyInWriter` sends and flushes every 4 KiB, one socket write and one
//! wake-up of the connection task each, which was a fifth of the loader's CPU time on a chunk
//! of narrow rows.

use crate::guessed::{NewProfiles, COPY_GUESSED, GUESSED_TYPES};
use crate::load::{store_error, LoadError};
use crate::resolve::{COPY_STAGE, COPY_TYPES};
use crate::staging::{names_hash, stamped_names, StagedRow};
use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use sluice_proto::Records;
use std::pin::Pin;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{CopyInSink, Transaction};

/// How much of the COPY is encoded before it is sent.
const SEND_AT: usize = 256 * 1024;

/// The binary COPY header: the signature, no flags, no header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Writes rows of `types` into a binary `COPY ... FROM STDIN`.
pub struct StageWriter<'a> {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    types: &'a [Type],
    buf: BytesMut,
}

impl<'a> StageWriter<'a> {
    /// A writer over an open COPY whose columns have `types`.
    pub fn new(sink: CopyInSink<Bytes>, types: &'a [Type]) -> StageWriter<'a> {
        let mut buf = BytesMut::with_capacity(SEND_AT + 64 * 1024);
        buf.put_slice(HEADER);
        StageWriter {
            sink: Box::pin(sink),
            types,
            buf,
        }
    }

    /// Encodes one row (one value per column), sending what is encoded once it is large.
    pub async fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), LoadError> {
        assert_eq!(values.len(), self.types.len(), "one value per column");
        self.buf.put_i16(values.len() as i16);
        for (value, ty) in values.iter().zip(self.types) {
            let at = self.buf.len();
            self.buf.put_i32(0);
            let len = match value.to_sql_checked(ty, &mut self.buf) {
                Ok(IsNull::Yes) => -1,
                Ok(IsNull::No) => i32::try_from(self.buf.len() - at - 4)
                    .map_err(|_| LoadError::Store(format!("a staged {ty} value is over 2 GiB")))?,
                Err(e) => return Err(LoadError::Store(format!("staging a {ty} value: {e}"))),
            };
            self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        if self.buf.len() >= SEND_AT {
            let chunk = self.buf.split().freeze();
            self.sink.send(chunk).await.map_err(store_error)?;
        }
        Ok(())
    }

    /// Sends the rest and the trailer, and ends the COPY: the rows it added.
    pub async fn finish(mut self) -> Result<u64, LoadError> {
        self.buf.put_i16(-1);
        let rest = self.buf.split().freeze();
        self.sink.send(rest).await.map_err(store_error)?;
        self.sink.as_mut().finish().await.map_err(store_error)
    }
}

/// A chunk's rows on their way into the staging tables: into `sluice_rows` for resolution, or,
/// for a chunk guessed to match nothing, into `sluice_stage` with the new profiles they name.
pub struct Stager {
    writer: StageWriter<'static>,
    new: Option<NewProfiles>,
    stamped: bool,
}

impl Stager {
    /// Opens the COPY of a chunk of `records` (`new`: a guessed chunk's reserved profiles).
    pub async fn open(
        tx: &Transaction<'_>,
        records: &Records,
        new: Option<NewProfiles>,
    ) -> Result<Stager, LoadError> {
        let (copy, types): (&str, &'static [Type]) = match new {
            Some(_) => (COPY_GUESSED, &GUESSED_TYPES),
            None => (COPY_STAGE, COPY_TYPES),
        };
        let sink = tx.copy_in(copy).await.map_err(store_error)?;
        Ok(Stager {
            writer: StageWriter::new(sink, types),
            new,
            stamped: matches!(records, Records::Profiles),
        })
    }

    /// Copies one row; a profile row carries the names it stamps.
    pub async fn write(&mut self, row: &StagedRow) -> Result<(), LoadError> {
        let names = match self.stamped {
            true => stamped_names(row),
            false => Vec::new(),
        };
        let hash = names_hash(&names);
        let unset: Vec<&str> = row.unset.iter().map(|n| &**n).collect();
        let values: [&(dyn ToSql + Sync); 22] = [
            &row.key,
            &row.updated_at,
            &row.identity,
            &row.external_id,
            &row.alias_kind,
            &row.alias_name,
            &row.email,
            &row.phone,
            &row.profile_ref,
            &row.create_kind,
            &row.create_value,
            &row.props,
            &unset,
            &names,
            &hash,
            &row.event_name,
            &row.event_time,
            &row.dedup_key,
            &row.price,
            &row.subs,
            &row.consented_at,
            &row.addressless,
        ];
        let Some(new) = &mut self.new else {
            return self.writer.write(&values).await;
        };
        let profile = new.assign(row.create_kind.as_deref(), row.create_value.as_deref())?;
        let created = profile.is_some();
        let matched: [&(dyn ToSql + Sync); 4] =
            [&profile, &row.create_kind, &row.create_value, &created];
        let mut all: [&(dyn ToSql + Sync); 26] = [&created; 26];
        all[..22].copy_from_slice(&values);
        all[22..].copy_from_slice(&matched);
        self.writer.write(&all).await
    }

    /// Ends the COPY: the guessed chunk's new profiles, to be created.
    pub async fn finish(self) -> Result<Option<NewProfiles>, LoadError> {
        self.writer.finish().await?;
        Ok(self.new)
    }
}
