//! The keyset SQL on `(watermark, key)` that the SQL sources share, written once: the range of
//! a chunk, the run's upper bound, each chunk boundary, the position before an instant. Each
//! source says only how it writes an instant and a key ([`Binder`]): as a literal, or as a
//! placeholder whose value it keeps.

use crate::source::Rows;
use chrono::{DateTime, Utc};
use sluice_proto::{Bound, KeyValue};

/// How a source writes the values a statement compares with: each call returns the SQL that
/// stands for the value, in the order the values appear in the statement.
pub trait Binder {
    /// An instant, comparable with the watermark column.
    fn instant(&mut self, t: &DateTime<Utc>) -> String;
    /// A key value, comparable with the key column.
    fn key(&mut self, k: &KeyValue) -> String;
}

/// One source relation's watermark and key, as its dialect quotes them.
pub struct Keyset {
    /// The watermark column.
    pub wm: String,
    /// The key column, as compared.
    pub key: String,
    /// The key column as selected (a cast where the source reads keys as text).
    pub key_select: String,
    /// The relation: a table, or a query as a derived table.
    pub from: String,
}

impl Keyset {
    /// `(wm, key) > b`, spelled out so the source prunes on the watermark.
    pub fn after(&self, b: &Bound, bind: &mut impl Binder) -> String {
        let (wm, key) = (&self.wm, &self.key);
        let (t1, t2, k) = (
            bind.instant(&b.watermark),
            bind.instant(&b.watermark),
            bind.key(&b.key),
        );
        format!("({wm} > {t1} OR ({wm} = {t2} AND {key} > {k}))")
    }

    /// `(wm, key) <= b`, for rows with a key: on the watermark alone a NULL key would pass.
    pub fn up_to(&self, b: &Bound, bind: &mut impl Binder) -> String {
        let (wm, key) = (&self.wm, &self.key);
        let (t1, t2, k) = (
            bind.instant(&b.watermark),
            bind.instant(&b.watermark),
            bind.key(&b.key),
        );
        format!("{key} IS NOT NULL AND ({wm} < {t1} OR ({wm} = {t2} AND {key} <= {k}))")
    }

    /// The condition of the rows in `(lo, hi]`.
    pub fn within(&self, lo: Option<&Bound>, hi: &Bound, bind: &mut impl Binder) -> String {
        let mut filter = self.up_to(hi, bind);
        if let Some(lo) = lo {
            filter.push_str(&format!(" AND {}", self.after(lo, bind)));
        }
        filter
    }

    /// The condition of `rows`: a chunk's range, or the listed keys at or before a bound.
    pub fn selecting(&self, rows: Rows<'_>, bind: &mut impl Binder) -> String {
        match rows {
            Rows::Range { lo, hi } => self.within(lo, hi, bind),
            Rows::Keys { keys: [], .. } => "1 = 0".to_string(),
            Rows::Keys { keys, upto } => {
                let mut filter = self.up_to(upto, bind);
                let listed: Vec<String> = keys.iter().map(|k| bind.key(k)).collect();
                filter.push_str(&format!(" AND {} IN ({})", self.key, listed.join(", ")));
                filter
            }
        }
    }

    /// The last row with a key below `cap` and after `lo`: a run's upper bound.
    pub fn last_below(
        &self,
        cap: &DateTime<Utc>,
        lo: Option<&Bound>,
        bind: &mut impl Binder,
    ) -> String {
        let mut filter = format!(
            "{} < {} AND {} IS NOT NULL",
            self.wm,
            bind.instant(cap),
            self.key
        );
        if let Some(lo) = lo {
            filter.push_str(&format!(" AND {}", self.after(lo, bind)));
        }
        self.last_where(&filter)
    }

    /// The last row with a key stamped before `at`.
    pub fn last_before(&self, at: &DateTime<Utc>, bind: &mut impl Binder) -> String {
        let filter = format!(
            "{} < {} AND {} IS NOT NULL",
            self.wm,
            bind.instant(at),
            self.key
        );
        self.last_where(&filter)
    }

    fn last_where(&self, filter: &str) -> String {
        let Keyset {
            wm,
            key,
            key_select,
            from,
        } = self;
        format!(
            "SELECT {wm}, {key_select} FROM {from} WHERE {filter} ORDER BY {wm} DESC, {key} DESC LIMIT 1"
        )
    }

    /// The row `rows` rows into `(previous, hi]`: the next chunk boundary.
    pub fn step(
        &self,
        previous: Option<&Bound>,
        hi: &Bound,
        rows: u64,
        bind: &mut impl Binder,
    ) -> String {
        let Keyset {
            wm,
            key,
            key_select,
            from,
        } = self;
        let filter = self.within(previous, hi, bind);
        format!(
            "SELECT {wm}, {key_select} FROM {from} WHERE {filter} ORDER BY {wm}, {key} LIMIT 1 OFFSET {}",
            rows.max(1) - 1
        )
    }

    /// How many rows are stamped after `now`: held back from every run until their time.
    pub fn count_after(&self, now: &DateTime<Utc>, bind: &mut impl Binder) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {} > {}",
            self.from,
            self.wm,
            bind.instant(now)
        )
    }

    /// The tail of a statement reading the first `rows` rows in `(watermark, key)` order.
    pub fn first(&self, rows: usize) -> String {
        format!("ORDER BY {}, {} LIMIT {}", self.wm, self.key, rows.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbered placeholders, recording what each stands for.
    struct Numbered(Vec<String>);

    impl Binder for Numbered {
        fn instant(&mut self, t: &DateTime<Utc>) -> String {
            self.0.push(t.to_rfc3339());
            format!("${}", self.0.len())
        }
        fn key(&mut self, k: &KeyValue) -> String {
            self.0.push(format!("{k:?}"));
            format!("${}", self.0.len())
        }
    }

    fn keyset() -> Keyset {
        Keyset {
            wm: "wm".into(),
            key: "id".into(),
            key_select: "id".into(),
            from: "t".into(),
        }
    }

    fn bound(second: u32, id: i64) -> Bound {
        Bound {
            watermark: format!("2024-01-01T00:00:{second:02}Z").parse().unwrap(),
            key: KeyValue::Int(id),
        }
    }

    #[test]
    fn a_chunk_step_binds_its_upper_bound_then_its_lower_bound_in_text_order() {
        let mut bind = Numbered(Vec::new());
        let sql = keyset().step(Some(&bound(1, 7)), &bound(9, 3), 100, &mut bind);
        assert_eq!(
            sql,
            "SELECT wm, id FROM t WHERE id IS NOT NULL AND (wm < $1 OR (wm = $2 AND id <= $3)) \
             AND (wm > $4 OR (wm = $5 AND id > $6)) ORDER BY wm, id LIMIT 1 OFFSET 99"
        );
        assert_eq!(bind.0[0], "2024-01-01T00:00:09+00:00");
        assert_eq!(bind.0[2], "Int(3)");
        assert_eq!(bind.0[3], "2024-01-01T00:00:01+00:00");
        assert_eq!(bind.0[5], "Int(7)");
    }

    #[test]
    fn rows_by_key_are_the_listed_keys_up_to_a_bound() {
        let mut bind = Numbered(Vec::new());
        let keys = [KeyValue::Int(4), KeyValue::Int(9)];
        let upto = bound(5, 2);
        let sql = keyset().selecting(
            Rows::Keys {
                keys: &keys,
                upto: &upto,
            },
            &mut bind,
        );
        assert_eq!(
            sql,
            "id IS NOT NULL AND (wm < $1 OR (wm = $2 AND id <= $3)) AND id IN ($4, $5)"
        );
        assert_eq!(bind.0[3], "Int(4)");
        let none = keyset().selecting(
            Rows::Keys {
                keys: &[],
                upto: &upto,
            },
            &mut bind,
        );
        assert_eq!(none, "1 = 0");
    }

    #[test]
    fn the_upper_bound_is_the_last_keyed_row_below_the_cap_after_the_watermark() {
        let mut bind = Numbered(Vec::new());
        let cap = "2024-01-02T00:00:00Z".parse().unwrap();
        let sql = keyset().last_below(&cap, Some(&bound(1, 7)), &mut bind);
        assert_eq!(
            sql,
            "SELECT wm, id FROM t WHERE wm < $1 AND id IS NOT NULL \
             AND (wm > $2 OR (wm = $3 AND id > $4)) ORDER BY wm DESC, id DESC LIMIT 1"
        );
        assert_eq!(bind.0.len(), 4);
    }
}
