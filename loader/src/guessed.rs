//! A chunk staged on the guess that it matches nothing (see `guesses`): the loader numbers its
//! new profiles while it copies the rows, straight into `sluice_stage` as resolution would
//! leave them, so the store only inserts the profiles and their identities. When the
//! identities' key proves the guess wrong, both inserts are undone and the rows are resolved
//! as any chunk's.

use crate::load::{store_error, LoadError};
use crate::resolve::{insert_created, COPY_TYPES};
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// Binary COPY of a guessed chunk's rows into the staging table: the columns of
/// `resolve::COPY_STAGE`, then what resolution would have found (the new profile, named by
/// the row's creating identity, created by the chunk).
pub const COPY_GUESSED: &str =
    "COPY sluice_stage (key, updated_at, identity, external_id, alias_kind, alias_name, email,
    phone, profile_ref, create_kind, create_value, props, unset, names, names_hash, event_name,
    event_time, dedup_key, price, subs, consented_at, addressless, profile_id, matched_kind,
    matched_value, created)
    FROM STDIN (FORMAT binary)";

/// The column types of `COPY_GUESSED`, in order.
pub static GUESSED_TYPES: LazyLock<Vec<Type>> = LazyLock::new(|| {
    let mut types = COPY_TYPES.to_vec();
    types.extend([Type::INT8, Type::TEXT, Type::TEXT, Type::BOOL]);
    types
});

/// Profile ids for up to `$1` new profiles, taken from the store's sequence.
const RESERVE: &str =
    "SELECT array_agg(nextval('profile_store.profile_id_seq')) FROM generate_series(1, $1::int8)";

/// Gives every row of a repeated creating identity the profile numbered for the first of
/// them, and marks all but the newest (by `updated_at`, then key, as resolution orders them)
/// superseded; `$1` and `$2` are the identities' kinds and values. An identity listed that
/// no other row carries (a hash collision) is left as it is.
const REPEATED: &str = "UPDATE sluice_stage s SET profile_id = d.first, superseded = d.n > 1
  FROM (SELECT key, min(profile_id) OVER (PARTITION BY create_kind, create_value) AS first,
               row_number() OVER (PARTITION BY create_kind, create_value
                                  ORDER BY updated_at DESC, key DESC) AS n
          FROM sluice_stage
         WHERE created AND (create_kind, create_value) IN
               (SELECT * FROM unnest($1::text[], $2::text[]))) d
 WHERE s.key = d.key AND s.created AND (s.profile_id <> d.first OR d.n > 1)";

/// Creates each new profile from its newest row (whole with `$3`, else empty, as resolution
/// does; `$2` is the import) and names it by its creating identity. The identities are
/// inserted in their key's order; one the workspace already holds fails the statement.
static CREATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH created AS (
    {}
      FROM sluice_stage WHERE created AND NOT superseded
)
INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
SELECT $1, create_kind, create_value, profile_id
  FROM sluice_stage WHERE created AND NOT superseded
 ORDER BY create_kind, create_value",
        insert_created("profile_id", "$3", "$2")
    )
});

/// After a wrong guess: the rows back where resolution reads them, as they were copied.
const UNSTAGE: &str = "INSERT INTO sluice_rows
SELECT key, updated_at, identity, external_id, alias_kind, alias_name, email, phone,
       profile_ref, create_kind, create_value, props, unset, names, names_hash, event_name,
       event_time, dedup_key, price, subs, consented_at, addressless
  FROM sluice_stage;
TRUNCATE sluice_stage";

/// The new profiles of a guessed chunk, numbered as its rows are staged from a block of ids
/// reserved before the copy: each row with a creating identity takes the next id. A row whose
/// identity an earlier row carried (by a hash of it, kept for every row) is listed, and the
/// rows of each listed identity share one profile once copied (`REPEATED`).
pub struct NewProfiles {
    ids: std::vec::IntoIter<i64>,
    seen: HashSet<u64>,
    repeated: HashSet<(String, String)>,
}

impl NewProfiles {
    /// Reserves ids for a chunk of `rows` rows (each row creates at most one profile).
    pub async fn reserve(tx: &Transaction<'_>, rows: usize) -> Result<NewProfiles, LoadError> {
        let ids: Vec<i64> = tx
            .query_one(RESERVE, &[&(rows as i64)])
            .await
            .map_err(store_error)?
            .get::<_, Option<Vec<i64>>>(0)
            .unwrap_or_default();
        Ok(NewProfiles {
            ids: ids.into_iter(),
            seen: HashSet::with_capacity(rows),
            repeated: HashSet::new(),
        })
    }

    /// The new profile of a row with this creating identity; none for a row without one.
    pub fn assign(
        &mut self,
        kind: Option<&str>,
        value: Option<&str>,
    ) -> Result<Option<i64>, LoadError> {
        let (Some(kind), Some(value)) = (kind, value) else {
            return Ok(None);
        };
        let mut hasher = DefaultHasher::new();
        (kind, value).hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            self.repeated.insert((kind.to_string(), value.to_string()));
        }
        let id = self.ids.next().ok_or_else(|| {
            LoadError::Store("a guessed chunk holds more rows than it reserved ids for".into())
        })?;
        Ok(Some(id))
    }

    /// Creates the profiles and identities of a chunk copied with `COPY_GUESSED`, under a
    /// savepoint: true when the guess held; false when an identity was already held, in which
    /// case nothing was created and the rows are back in `sluice_rows`, to be resolved.
    pub async fn create(
        self,
        tx: &Transaction<'_>,
        (workspace, import): (i64, i64),
        whole: bool,
    ) -> Result<bool, LoadError> {
        if !self.repeated.is_empty() {
            let (kinds, values): (Vec<String>, Vec<String>) = self.repeated.into_iter().unzip();
            tx.execute(REPEATED, &[&kinds, &values])
                .await
                .map_err(store_error)?;
        }
        tx.batch_execute("SAVEPOINT guess")
            .await
            .map_err(store_error)?;
        match tx
            .execute(CREATE.as_str(), &[&workspace, &import, &whole])
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match store_error(e) {
                LoadError::Conflict(_) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT guess")
                        .await
                        .map_err(store_error)?;
                    tx.batch_execute(UNSTAGE).await.map_err(store_error)?;
                    Ok(false)
                }
                other => Err(other),
            },
        }
    }
}
