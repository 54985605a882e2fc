//! Reading an import file record by record, without holding it: CSV through
//! the column convention of the `tabular` crate, NDJSON line by line, and a
//! JSON array element by element.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, bail};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;
use tabular::{Layout, Mapping};

/// The kind of file, from its extension unless given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
    Json,
}

impl Format {
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(Self::Csv),
            Some("ndjson" | "jsonl") => Ok(Self::Ndjson),
            Some("json") => Ok(Self::Json),
            _ => bail!(
                "cannot tell the format of {} from its extension; name it .csv, .ndjson or .json, or pass --format",
                path.display()
            ),
        }
    }
}

/// One record of the file, and where it came from.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The record, or why its rows do not make one.
    pub record: Result<Value, String>,
    pub origin: Origin,
}

/// What the errors file repeats for a failed record.
#[derive(Debug, Clone)]
pub enum Origin {
    /// The CSV rows of the record, as read.
    Rows(Vec<csv::StringRecord>),
    /// A JSON record as read.
    Object,
}

/// The file's CSV header, when it is a CSV file.
pub fn csv_header(path: &Path) -> anyhow::Result<csv::StringRecord> {
    let mut reader = csv_reader(path)?;
    Ok(reader
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .clone())
}

fn csv_reader(path: &Path) -> anyhow::Result<csv::Reader<File>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(csv::ReaderBuilder::new().flexible(false).from_reader(file))
}

/// Reads the file, handing each record to `sink` in file order until the
/// file ends or `sink` breaks. A file that cannot be parsed is an error naming
/// the line; rows that parse but do not make a record are a unit's error.
pub fn read(
    path: &Path,
    format: Format,
    mapping: &Mapping,
    mut sink: impl FnMut(Unit) -> ControlFlow<()>,
) -> anyhow::Result<()> {
    match format {
        Format::Csv => read_csv(path, mapping, &mut sink),
        Format::Ndjson => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&line)
                    .with_context(|| format!("line {} is not JSON", n + 1))?;
                if sink(json_unit(value, mapping)).is_break() {
                    break;
                }
            }
            Ok(())
        }
        Format::Json => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let mut de = serde_json::Deserializer::from_reader(BufReader::new(file));
            Elements {
                sink: &mut |value| sink(json_unit(value, mapping)),
            }
            .deserialize(&mut de)
            .with_context(|| {
                format!(
                    "{} must hold one JSON array of record objects",
                    path.display()
                )
            })?;
            Ok(())
        }
    }
}

fn json_unit(mut value: Value, mapping: &Mapping) -> Unit {
    let record = match &mut value {
        Value::Object(fields) => {
            for reserved in tabular::RESERVED {
                fields.remove(reserved);
            }
            for (name, default) in &mapping.values {
                fields
                    .entry(name.clone())
                    .or_insert_with(|| default.clone());
            }
            Ok(value)
        }
        other => Err(format!("a record must be a JSON object, got {other}")),
    };
    Unit {
        record,
        origin: Origin::Object,
    }
}

fn read_csv(
    path: &Path,
    mapping: &Mapping,
    sink: &mut dyn FnMut(Unit) -> ControlFlow<()>,
) -> anyhow::Result<()> {
    let mut reader = csv_reader(path)?;
    let header = reader
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .clone();
    let layout = Layout::new(header.iter(), mapping)
        .with_context(|| format!("the header of {}", path.display()))?;
    let mut open: Option<Open> = None;
    for row in reader.records() {
        let row = row.with_context(|| format!("reading {}", path.display()))?;
        let cells: Vec<&str> = row.iter().collect();
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let id = layout.external_id(&cells).map(str::to_owned);
        if let Some(current) = open.as_mut()
            && layout.groups_rows()
            && id.is_some()
            && id == current.id
        {
            if let Ok(record) = &mut current.record
                && let Err(e) = layout.extend(record, &cells)
            {
                current.record = Err(line_error(&row, &e.0));
            }
            current.rows.push(row);
            continue;
        }
        if let Some(done) = open.take()
            && sink(done.finish(&layout)).is_break()
        {
            return Ok(());
        }
        open = Some(Open {
            record: layout.start(&cells).map_err(|e| line_error(&row, &e.0)),
            rows: vec![row],
            id,
        });
    }
    if let Some(done) = open.take() {
        let _ = sink(done.finish(&layout));
    }
    Ok(())
}

/// The record being read: with `[]` columns, the rows that follow with the
/// same external id continue it.
struct Open {
    record: Result<Value, String>,
    rows: Vec<csv::StringRecord>,
    id: Option<String>,
}

impl Open {
    fn finish(self, layout: &Layout) -> Unit {
        Unit {
            record: self.record.map(|mut r| {
                layout.finish(&mut r);
                r
            }),
            origin: Origin::Rows(self.rows),
        }
    }
}

fn line_error(row: &csv::StringRecord, error: &str) -> String {
    match row.position() {
        Some(p) => format!("line {}: {error}", p.line()),
        None => error.to_owned(),
    }
}

/// A JSON array read one element at a time, each handed to `sink`.
struct Elements<'s> {
    sink: &'s mut dyn FnMut(Value) -> ControlFlow<()>,
}

impl<'de> DeserializeSeed<'de> for Elements<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            if (self.sink)(value).is_break() {
                // The rest of the array is not read: the importer stopped.
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;

    fn collect(text: &str, name: &str) -> anyhow::Result<Vec<Unit>> {
        let dir = std::env::temp_dir().join(format!("arcusctl-source-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        File::create(&path)?.write_all(text.as_bytes())?;
        let mut units = Vec::new();
        let result = read(&path, Format::of(&path)?, &Mapping::default(), |u| {
            units.push(u);
            ControlFlow::Continue(())
        });
        std::fs::remove_dir_all(&dir)?;
        result.map(|()| units)
    }

    #[test]
    fn csv_rows_group_by_external_id_when_lines_are_per_row() {
        let units = collect(
            "external_id,account_external_id,line_items[].product_external_id,line_items[].quantity\n\
             O-1,C-1,P-1,1\nO-1,,P-2,2\n,,,\nO-2,C-2,P-1,5\nO-3,C-1,P-1,1\nO-3,C-9,P-2,1\n",
            "orders.csv",
        )
        .expect("read");
        assert_eq!(units.len(), 3);
        assert_eq!(
            units[0].record.as_ref().expect("record")["line_items"],
            json!([{"product_external_id": "P-1", "quantity": 1},
                   {"product_external_id": "P-2", "quantity": 2}])
        );
        assert!(matches!(&units[0].origin, Origin::Rows(rows) if rows.len() == 2));
        let err = units[2].record.as_ref().unwrap_err();
        assert!(
            err.starts_with("line 7: column 'account_external_id'"),
            "{err}"
        );
    }

    #[test]
    fn json_and_ndjson_read_every_record_and_drop_error_columns() {
        let units = collect(
            r#"[{"external_id": "A", "error_code": "x"}, 7, {"external_id": "B"}]"#,
            "a.json",
        )
        .expect("read");
        assert_eq!(units.len(), 3);
        assert_eq!(
            units[0].record.as_ref().unwrap(),
            &json!({"external_id": "A"})
        );
        assert!(units[1].record.is_err());
        let units = collect(
            "{\"external_id\": \"A\"}\n\n{\"external_id\": \"B\"}\n",
            "a.ndjson",
        )
        .expect("read");
        assert_eq!(units.len(), 2);
        let err = collect("{\"a\": 1}\n{oops\n", "b.ndjson").unwrap_err();
        assert_eq!(err.to_string(), "line 2 is not JSON");
        assert!(collect(r#"{"records": []}"#, "c.json").is_err());
        assert!(
            collect("a,b\n1,2,3\n", "d.csv").is_err(),
            "ragged rows are refused"
        );
    }
}
