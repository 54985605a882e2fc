//! Records as spreadsheet rows: the one column convention that `arcusctl
//! import` reads CSV files with and that the API writes its errors downloads
//! in, so a downloaded errors file can be fixed and imported again as it is.
//!
//! - `title` is a field of the record; `address.city` a field of a nested
//!   object.
//! - `line_items[0].quantity` is a field of element 0 of an array ("wide"
//!   files: one row per record, numbered columns per element).
//! - `line_items[].quantity` is a field of one element per row ("long" files:
//!   consecutive rows with the same `external_id` are one record, each row
//!   adding an element, as QuickBooks and Shopify export order lines).
//! - An empty cell is an absent field.
//! - A `quantity` cell holding a whole number becomes a JSON number and a
//!   `true`/`false` cell of a flag field a boolean; every other cell stays a
//!   string, which the service reads exactly (money included), so a
//!   spreadsheet's text is never rounded through a float on the way in.
//! - The columns `index`, `error_code`, `error`, `param` and `hint` carry
//!   errors in errors files and are never part of a record.
//!
//! Paths use the same `name[i].field` syntax as the `param` of a record's
//! error, so an error names the column to fix.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The columns an errors file adds to the original ones, in order.
pub const ERROR_COLUMNS: [&str; 3] = ["error_code", "error", "param"];

/// Columns that describe an error, never a record's field.
pub const RESERVED: [&str; 5] = ["index", "error_code", "error", "param", "hint"];

/// Fields whose whole-number cells are sent as numbers: an order line's
/// quantity must be a JSON integer.
const INTEGER_FIELDS: &[&str] = &["quantity"];
/// Fields that are flags.
const BOOLEAN_FIELDS: &[&str] = &[
    "is_default_billing",
    "is_default_shipping",
    "bypass_period_check",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
    /// `[]`: one element per row.
    Each,
}

/// How a file's columns become a record's fields, given as JSON:
/// `{"columns": {"Handle": "external_id", "Body (HTML)": null},
///   "values": {"product_type": "physical"}}`. A column mapped to `null` is
/// ignored; a column not named keeps its own name as its path; `values` are
/// set on every record that leaves them empty.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default)]
    pub columns: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub values: Map<String, Value>,
}

/// A header that cannot be read as records.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("column {number} '{name}' is not a field path: {reason}")]
    BadColumn {
        number: usize,
        name: String,
        reason: String,
    },
    #[error("two columns set the field '{0}'")]
    Duplicate(String),
    #[error("the mapping names column '{0}', which the file does not have")]
    UnknownMappedColumn(String),
}

/// A row that cannot be read as (part of) a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct RowError(pub String);

/// One column that feeds a record.
#[derive(Debug)]
struct Target {
    column: usize,
    path: Vec<Segment>,
    name: String,
}

/// A file's header read against the convention (and a mapping).
#[derive(Debug)]
pub struct Layout {
    /// Columns outside any `[]` array.
    scalars: Vec<Target>,
    /// `[]` columns, grouped by the array they add elements to: the path up
    /// to the `[]`, and each column's path inside the element.
    each: Vec<(Vec<Segment>, Vec<Target>)>,
    external_id: Option<usize>,
    values: Map<String, Value>,
}

impl Layout {
    pub fn new<'a>(
        header: impl IntoIterator<Item = &'a str>,
        mapping: &Mapping,
    ) -> Result<Self, LayoutError> {
        let header: Vec<&str> = header.into_iter().collect();
        if let Some(missing) = mapping
            .columns
            .keys()
            .find(|name| !header.contains(&name.as_str()))
        {
            return Err(LayoutError::UnknownMappedColumn(missing.clone()));
        }
        let mut layout = Self {
            scalars: Vec::new(),
            each: Vec::new(),
            external_id: None,
            values: mapping.values.clone(),
        };
        let mut seen = Vec::new();
        for (column, raw) in header.iter().enumerate() {
            let name = match mapping.columns.get(*raw) {
                Some(None) => continue,
                Some(Some(mapped)) => mapped.trim(),
                None => raw.trim(),
            };
            if name.is_empty() || RESERVED.contains(&name) {
                continue;
            }
            let path = parse_path(name).map_err(|reason| LayoutError::BadColumn {
                number: column + 1,
                name: (*raw).to_owned(),
                reason,
            })?;
            if seen.contains(&path) {
                return Err(LayoutError::Duplicate(name.to_owned()));
            }
            seen.push(path.clone());
            if path == [Segment::Field("external_id".to_owned())] {
                layout.external_id = Some(column);
            }
            let name = name.to_owned();
            match path.iter().position(|s| *s == Segment::Each) {
                None => layout.scalars.push(Target { column, path, name }),
                Some(at) => {
                    let (array, inner) = (path[..at].to_vec(), path[at + 1..].to_vec());
                    let target = Target {
                        column,
                        path: inner,
                        name,
                    };
                    match layout.each.iter_mut().find(|(a, _)| *a == array) {
                        Some((_, targets)) => targets.push(target),
                        None => layout.each.push((array, vec![target])),
                    }
                }
            }
        }
        Ok(layout)
    }

    /// Whether consecutive rows with one external id form one record.
    pub fn groups_rows(&self) -> bool {
        !self.each.is_empty()
    }

    /// The row's external id, when it has one.
    pub fn external_id<'a>(&self, row: &[&'a str]) -> Option<&'a str> {
        self.external_id
            .and_then(|c| row.get(c))
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// The record a row starts.
    pub fn start(&self, row: &[&str]) -> Result<Value, RowError> {
        let mut record = Value::Object(Map::new());
        self.extend(&mut record, row)?;
        Ok(record)
    }

    /// Adds a row to the record it continues: its array cells become new
    /// elements, and its other cells must agree with what earlier rows set.
    pub fn extend(&self, record: &mut Value, row: &[&str]) -> Result<(), RowError> {
        for target in &self.scalars {
            let Some(value) = cell(row, target) else {
                continue;
            };
            match get(record, &target.path) {
                None => set(record, &target.path, value, &target.name)?,
                Some(existing) if *existing == value => {}
                Some(existing) => {
                    return Err(RowError(format!(
                        "column '{}' is {} here but {} in an earlier row of the same record",
                        target.name,
                        shown(&value),
                        shown(existing)
                    )));
                }
            }
        }
        for (array, targets) in &self.each {
            let mut element = Value::Null;
            for target in targets {
                if let Some(value) = cell(row, target) {
                    if target.path.is_empty() {
                        element = value;
                    } else {
                        set(&mut element, &target.path, value, &target.name)?;
                    }
                }
            }
            if element.is_null() {
                continue;
            }
            let len = match get(record, array) {
                Some(Value::Array(items)) => items.len(),
                _ => 0,
            };
            let mut at = array.clone();
            at.push(Segment::Index(len));
            set(record, &at, element, "[]")?;
        }
        Ok(())
    }

    /// Completes a record once its last row is read: numbered elements left
    /// out are dropped, and the mapping's values fill what the file left empty.
    pub fn finish(&self, record: &mut Value) {
        compact(record);
        if let Value::Object(fields) = record {
            for (name, value) in &self.values {
                fields.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

fn parse_path(name: &str) -> Result<Vec<Segment>, String> {
    let mut path = Vec::new();
    for part in name.split('.') {
        let (field, brackets) = match part.find('[') {
            Some(at) => (&part[..at], Some(&part[at..])),
            None => (part, None),
        };
        if field.is_empty() || field.contains(']') {
            return Err("every part of a path needs a field name".to_owned());
        }
        path.push(Segment::Field(field.to_owned()));
        if let Some(brackets) = brackets {
            let inner = brackets
                .strip_prefix('[')
                .and_then(|b| b.strip_suffix(']'))
                .filter(|b| !b.contains(['[', ']']))
                .ok_or("write an array element as name[0] or name[]")?;
            if inner.is_empty() {
                path.push(Segment::Each);
            } else {
                let index = inner
                    .parse::<usize>()
                    .map_err(|_| format!("'{inner}' is not an element number"))?;
                path.push(Segment::Index(index));
            }
        }
    }
    if path.iter().filter(|s| **s == Segment::Each).count() > 1 {
        return Err("a column may have only one [] (one element per row)".to_owned());
    }
    Ok(path)
}

/// The typed value of a cell, or `None` when it is empty.
fn cell(row: &[&str], target: &Target) -> Option<Value> {
    let text = row.get(target.column)?;
    if text.trim().is_empty() {
        return None;
    }
    let field = target.path.iter().rev().find_map(|s| match s {
        Segment::Field(f) => Some(f.as_str()),
        _ => None,
    });
    let trimmed = text.trim();
    if field.is_some_and(|f| INTEGER_FIELDS.contains(&f))
        && let Ok(n) = trimmed.parse::<i64>()
    {
        return Some(Value::from(n));
    }
    if field.is_some_and(|f| BOOLEAN_FIELDS.contains(&f)) {
        match trimmed.to_ascii_lowercase().as_str() {
            "true" => return Some(Value::Bool(true)),
            "false" => return Some(Value::Bool(false)),
            _ => {}
        }
    }
    // Anything else goes as written: the service says what is wrong with it,
    // naming the field.
    Some(Value::String((*text).to_owned()))
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

fn get<'v>(root: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    let mut at = root;
    for segment in path {
        at = match (segment, at) {
            (Segment::Field(f), Value::Object(fields)) => fields.get(f)?,
            (Segment::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    (!at.is_null()).then_some(at)
}

fn set(root: &mut Value, path: &[Segment], value: Value, name: &str) -> Result<(), RowError> {
    let clash = || {
        RowError(format!(
            "column '{name}' sets a field another column already uses differently"
        ))
    };
    let mut at = root;
    for segment in path {
        at = match segment {
            Segment::Field(f) => {
                if at.is_null() {
                    *at = Value::Object(Map::new());
                }
                let Value::Object(fields) = at else {
                    return Err(clash());
                };
                fields.entry(f.clone()).or_insert(Value::Null)
            }
            Segment::Index(i) => {
                if at.is_null() {
                    *at = Value::Array(Vec::new());
                }
                let Value::Array(items) = at else {
                    return Err(clash());
                };
                if items.len() <= *i {
                    items.resize(*i + 1, Value::Null);
                }
                &mut items[*i]
            }
            Segment::Each => unreachable!("[] paths are split off by the layout"),
        };
    }
    if !at.is_null() {
        return Err(clash());
    }
    *at = value;
    Ok(())
}

/// Drops the holes numbered columns leave in arrays (`lines[0]` and
/// `lines[2]` filled, `lines[1]` empty).
fn compact(value: &mut Value) {
    match value {
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(compact);
        }
        Value::Object(fields) => fields.values_mut().for_each(compact),
        _ => {}
    }
}

/// A record as columns in the convention, in its fields' order: the inverse
/// of [`Layout`] for wide files. Nulls and empty arrays give no column.
pub fn flatten(record: &Value) -> Vec<(String, String)> {
    let mut columns = Vec::new();
    walk(record, String::new(), &mut columns);
    columns
}

fn walk(value: &Value, path: String, columns: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Object(fields) => {
            for (name, item) in fields {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                walk(item, child, columns);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), columns);
            }
        }
        Value::String(s) => columns.push((path, s.clone())),
        Value::Number(n) => columns.push((path, n.to_string())),
        Value::Bool(b) => columns.push((path, b.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn layout(header: &[&str]) -> Layout {
        Layout::new(header.iter().copied(), &Mapping::default()).expect("layout")
    }

    #[test]
    fn wide_rows_build_nested_records_with_types() {
        let l = layout(&[
            "external_id",
            "title",
            "list_price",
            "address.city",
            "line_items[0].quantity",
            "line_items[0].product_external_id",
            "line_items[1].quantity",
            "is_default_billing",
            "error_code",
        ]);
        let mut r = l
            .start(&["P-1", "Mug", "9.50", "Oslo", "2", "SKU-1", "", "TRUE", "x"])
            .expect("row");
        l.finish(&mut r);
        assert_eq!(
            r,
            json!({
                "external_id": "P-1", "title": "Mug", "list_price": "9.50",
                "address": {"city": "Oslo"},
                "line_items": [{"quantity": 2, "product_external_id": "SKU-1"}],
                "is_default_billing": true,
            })
        );
    }

    #[test]
    fn long_rows_add_one_element_each_and_must_agree() {
        let l = layout(&[
            "external_id",
            "account_external_id",
            "line_items[].product_external_id",
            "line_items[].quantity",
        ]);
        assert!(l.groups_rows());
        let mut r = l.start(&["O-1", "C-1", "P-1", "1"]).expect("first");
        l.extend(&mut r, &["O-1", "", "P-2", "3"]).expect("second");
        l.extend(&mut r, &["O-1", "C-1", "P-3", "x"])
            .expect("third");
        l.finish(&mut r);
        assert_eq!(
            r,
            json!({"external_id": "O-1", "account_external_id": "C-1", "line_items": [
                {"product_external_id": "P-1", "quantity": 1},
                {"product_external_id": "P-2", "quantity": 3},
                {"product_external_id": "P-3", "quantity": "x"},
            ]})
        );
        let err = l.extend(&mut r, &["O-1", "C-2", "", ""]).unwrap_err();
        assert_eq!(
            err.0,
            "column 'account_external_id' is 'C-2' here but 'C-1' in an earlier row of the same record"
        );
    }

    #[test]
    fn a_mapping_renames_ignores_and_fills() {
        let mapping: Mapping = serde_json::from_value(json!({
            "columns": {"Handle": "external_id", "Body (HTML)": null},
            "values": {"product_type": "physical", "title": "unused"}
        }))
        .expect("mapping");
        let l = Layout::new(["Handle", "title", "Body (HTML)"], &mapping).expect("layout");
        let mut r = l.start(&["h-1", "Hat", "<p>x</p>"]).expect("row");
        l.finish(&mut r);
        assert_eq!(
            r,
            json!({"external_id": "h-1", "title": "Hat", "product_type": "physical"})
        );
        assert_eq!(l.external_id(&["h-1", "", ""]), Some("h-1"));
        let unknown: Mapping =
            serde_json::from_value(json!({"columns": {"Sku": "sku"}})).expect("mapping");
        assert_eq!(
            Layout::new(["sku"], &unknown).unwrap_err(),
            LayoutError::UnknownMappedColumn("Sku".into())
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        let bad = |h: &[&str]| Layout::new(h.iter().copied(), &Mapping::default()).unwrap_err();
        assert!(matches!(
            bad(&["a[x]"]),
            LayoutError::BadColumn { number: 1, .. }
        ));
        assert!(matches!(
            bad(&["ok", ".b"]),
            LayoutError::BadColumn { number: 2, .. }
        ));
        assert!(matches!(bad(&["a[].b[].c"]), LayoutError::BadColumn { .. }));
        assert_eq!(bad(&["sku", " sku"]), LayoutError::Duplicate("sku".into()));
    }

    #[test]
    fn flatten_is_the_inverse_of_a_wide_layout() {
        let record = json!({
            "external_id": "O-9", "order_date": "2026-01-02", "notes": null,
            "line_items": [{"product_external_id": "P-1", "quantity": 2, "sell_rate": 4.5}],
            "addresses": [], "bypass_period_check": false
        });
        let columns = flatten(&record);
        let header: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        let row: Vec<&str> = columns.iter().map(|(_, v)| v.as_str()).collect();
        let l = Layout::new(header, &Mapping::default()).expect("layout");
        let mut back = l.start(&row).expect("row");
        l.finish(&mut back);
        assert_eq!(
            back,
            json!({
                "external_id": "O-9", "order_date": "2026-01-02",
                "line_items": [{"product_external_id": "P-1", "quantity": 2, "sell_rate": "4.5"}],
                "bypass_period_check": false
            })
        );
    }
}
