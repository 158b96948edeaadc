//! How commands print: `--output table` (the default, for people: tables with headers) or
//! `--output json` (one JSON document, lists as `[]` when empty, never JSON inside strings),
//! and stdout written so a closed pipe (`| head`) ends the command quietly.

use serde::Serialize;
use std::io::Write;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people: text and tables with headers.
    #[value(alias = "text")]
    Table,
    /// One JSON document on one line.
    Json,
}

impl Output {
    /// Whether the answer is JSON.
    pub fn json(self) -> bool {
        self == Output::Json
    }
}

/// Writes a line to stdout, returning the error (a closed pipe among them) instead of
/// panicking as `println!` does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use outln;

/// Prints `value` as JSON, or for people through `table`.
pub fn emit<T: Serialize>(
    output: Output,
    value: &T,
    table: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string(value)?)?,
        Output::Table => table(&mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// A table with a header row and no borders, in the style of `kubectl get`.
pub fn table<I, S>(header: I) -> comfy_table::Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header);
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Writes a table, its lines without trailing blanks.
pub fn write_table(out: &mut dyn Write, table: &comfy_table::Table) -> std::io::Result<()> {
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Whether an error is a closed stdout (`sluice ... | head`): the reader has all it wants.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
