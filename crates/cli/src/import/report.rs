//! The errors file: every failed record as it was in the input, plus its
//! error, in input order. A CSV input gives a CSV with the original columns
//! and `error_code`, `error`, `param`; a JSON input gives NDJSON records with
//! those three fields added. The importer ignores those columns, so the file
//! can be fixed and imported again as it is.
//!
//! It is written under a temporary name and renamed when the import ends, so
//! an interrupted import never leaves a half-written errors file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::client::RecordError;
use super::source::{self, Format, Origin, Unit};

pub struct ErrorsFile {
    path: PathBuf,
    partial: PathBuf,
    /// `None` once finished.
    out: Option<Out>,
    written: u64,
}

/// An import that stops on an error removes what it had written: its errors
/// file would be incomplete. (A process killed outright leaves it, and the
/// next run replaces it.)
impl Drop for ErrorsFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

enum Out {
    Csv {
        writer: Box<csv::Writer<File>>,
        /// Where error_code, error, param and hint go in a row: a column the
        /// input already has (an errors file imported again), or an added one.
        places: [Option<usize>; 4],
        width: usize,
    },
    Ndjson(BufWriter<File>),
}

impl ErrorsFile {
    pub fn create(input: &Path, format: Format) -> anyhow::Result<Self> {
        let path = super::errors_path(input, format);
        let partial = path.with_extension(format!(
            "{}.partial",
            path.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        let out = match format {
            Format::Csv => {
                let mut header: Vec<String> = source::csv_header(input)?
                    .iter()
                    .map(str::to_owned)
                    .collect();
                let mut places = [None; 4];
                for (place, name) in places
                    .iter_mut()
                    .zip(["error_code", "error", "param", "hint"])
                {
                    *place = header.iter().position(|h| h.trim() == name);
                    // hint is written only where the input has it (a file
                    // downloaded from the API); the three others always.
                    if place.is_none() && name != "hint" {
                        header.push(name.to_owned());
                        *place = Some(header.len() - 1);
                    }
                }
                let mut writer = Box::new(csv::Writer::from_writer(file));
                writer.write_record(&header)?;
                Out::Csv {
                    writer,
                    places,
                    width: header.len(),
                }
            }
            Format::Ndjson | Format::Json => Out::Ndjson(BufWriter::new(file)),
        };
        Ok(Self {
            path,
            partial,
            out: Some(out),
            written: 0,
        })
    }

    /// Writes the failed units of one chunk, in order.
    pub fn write(
        &mut self,
        units: &[Unit],
        failures: &[(usize, RecordError)],
    ) -> anyhow::Result<()> {
        for (at, error) in failures {
            let unit = &units[*at];
            self.written += 1;
            let out = self.out.as_mut().expect("written before it is finished");
            match (out, &unit.origin) {
                (
                    Out::Csv {
                        writer,
                        places,
                        width,
                    },
                    Origin::Rows(rows),
                ) => {
                    let values = [
                        error.code.as_str(),
                        error.error.as_str(),
                        error.param.as_deref().unwrap_or(""),
                        error.hint.as_deref().unwrap_or(""),
                    ];
                    for row in rows {
                        let mut cells: Vec<&str> = row.iter().collect();
                        cells.resize(*width, "");
                        for (place, value) in places.iter().zip(values) {
                            if let Some(place) = place {
                                cells[*place] = value;
                            }
                        }
                        writer.write_record(&cells)?;
                    }
                }
                (Out::Ndjson(out), _) => {
                    let mut record = match &unit.record {
                        Ok(Value::Object(fields)) => fields.clone(),
                        _ => serde_json::Map::new(),
                    };
                    record.insert("error_code".into(), error.code.clone().into());
                    record.insert("error".into(), error.error.clone().into());
                    record.insert("param".into(), error.param.clone().into());
                    serde_json::to_writer(&mut *out, &record)?;
                    out.write_all(b"\n")?;
                }
                (Out::Csv { .. }, Origin::Object) => {
                    unreachable!("a CSV input gives CSV rows")
                }
            }
        }
        Ok(())
    }

    /// Puts the file in place when records failed, and otherwise removes it
    /// and any errors file an earlier run left, which no longer holds.
    pub fn finish(mut self) -> anyhow::Result<Option<PathBuf>> {
        match self.out.take().expect("finished once") {
            Out::Csv { mut writer, .. } => writer.flush()?,
            Out::Ndjson(mut out) => out.flush()?,
        }
        if self.written == 0 {
            std::fs::remove_file(&self.partial)?;
            if self.path.exists() {
                std::fs::remove_file(&self.path)
                    .with_context(|| format!("removing the stale {}", self.path.display()))?;
            }
            return Ok(None);
        }
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(Some(self.path.clone()))
    }
}
