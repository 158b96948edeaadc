//! The staging COPY's writer: rows encoded in PostgreSQL's binary COPY format by the driver's
//! own `ToSql`, sent in large messages. The driver's `BinaryCopyInWriter` sends and flushes
//! every 4 KiB, one socket write and one wake-up of the connection task each, which was a
//! fifth of the loader's CPU time on a chunk of narrow rows.

use crate::load::{store_error, LoadError};
use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use std::pin::Pin;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::CopyInSink;

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
