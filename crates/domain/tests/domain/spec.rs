//! Every resource's parser against the fields it declares (`domain::spec`),
//! which the OpenAPI document's record schemas are built from: every
//! declared field, nested ones included, is read by the parser (a value of
//! the wrong type is refused at its path), a required one is required, and
//! every declared limit (length, values, sign, range, item counts) is the
//! parser's, and every alias is read in its name's place. The other half, that the parser reads no undeclared field, is
//! checked by the parser itself in debug builds, as these tests run it.

use domain::Resource;
use domain::error::RecordError;
use domain::import::{fields, parse_record};
use domain::spec::{EXTERNAL_ID_MAX, Field, GL_NUMBER_MAX, Kind};
use serde_json::{Value, json};

/// Records of each resource that pass its parser, between them holding at
/// least one item of every list the resource declares.
fn bases(resource: Resource) -> Vec<Value> {
    match resource {
        Resource::Accounts => vec![json!({
            "name": "Acme", "account_type": "business", "email": "ap@acme.test",
            "phone": "555-0100", "credit_limit": 5000,
            "addresses": [{"type": "billing", "line1": "1 Main St", "is_default_billing": true}],
            "contacts": [{"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.test",
                          "title": "AP clerk", "is_primary": true}]
        })],
        Resource::Products => vec![
            json!({"title": "Gift set", "product_type": "kit", "sku": "GS-1",
                   "components": [{"product_external_id": "P-1", "quantity": 2}],
                   "pricing": [{"pricing_level_id": "retail", "min_quantity": 1,
                                "list_price": 49.99, "sell_price": 45}],
                   "vendors": [{"vendor_external_id": "V-1", "vendor_sku": "GS-V",
                                "default_unit_cost": 18}]}),
            json!({"title": "Shirt", "product_type": "variant_parent",
                   "variants": [{"title": "Shirt S", "product_type": "kit", "sku": "SH-S",
                                 "components": [{"product_external_id": "P-1", "quantity": 1}],
                                 "pricing": [{"pricing_level_id": "retail", "list_price": 5}],
                                 "vendors": [{"vendor_external_id": "V-1"}]}]}),
        ],
        Resource::Orders => vec![json!({
            "account_external_id": "C-1", "order_date": "2026-01-05",
            "discount": {"type": "flat", "value": 1},
            "line_items": [{"product_external_id": "P-1", "quantity": 2, "sell_rate": 5}]
        })],
        Resource::JournalEntries => vec![json!({
            "entry_date": "2026-01-05", "description": "Opening balance",
            "lines": [{"gl_account_number": "6010", "debit_amount": 10},
                      {"gl_account_number": "1010", "credit_amount": 10}]
        })],
        Resource::VendorBills => vec![json!({
            "vendor_external_id": "V-1", "bill_date": "2026-01-05",
            "items": [{"gl_account_number": "6010", "amount": 10}]
        })],
        // A payment pays one bill or lists applications, never both.
        Resource::ApPayments => vec![
            json!({
                "vendor_external_id": "V-1", "payment_date": "2026-01-05", "amount": 10,
                "method": "ach", "bill_external_id": "B-1"
            }),
            json!({
                "vendor_external_id": "V-1", "payment_date": "2026-01-05", "amount": 10,
                "method": "ach", "applications": [{"bill_external_id": "B-1", "amount": 10}]
            }),
        ],
    }
}

/// Where a field's object is in a record: the keys leading to it, with the
/// index of the item for a list and none for an object.
#[derive(Clone, Default)]
struct At(Vec<(String, Option<usize>)>);

impl At {
    fn path(&self, name: &str) -> String {
        let mut path = String::new();
        for (key, index) in &self.0 {
            match index {
                Some(index) => path.push_str(&format!("{key}[{index}].")),
                None => path.push_str(&format!("{key}.")),
            }
        }
        path + name
    }

    fn object<'a>(&self, record: &'a mut Value) -> Option<&'a mut serde_json::Map<String, Value>> {
        let mut value = record;
        for (key, index) in &self.0 {
            value = value.get_mut(key)?;
            if let Some(index) = index {
                value = value.get_mut(*index)?;
            }
        }
        value.as_object_mut()
    }
}

struct Checker {
    resource: Resource,
    checked: Vec<String>,
}

impl Checker {
    fn parse(&self, record: &Value) -> Result<String, RecordError> {
        parse_record(self.resource, record)
    }

    /// The record with `change` made to the field's object.
    fn with(
        &self,
        base: &Value,
        at: &At,
        change: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> Value {
        let mut record = base.clone();
        change(
            at.object(&mut record)
                .expect("the field's object is in the base"),
        );
        record
    }

    fn refused_at(&self, record: &Value, path: &str, code: Option<&str>, why: &str) {
        match self.parse(record) {
            Ok(_) => panic!("{}: {why}: accepted {record}", self.resource),
            Err(e) => {
                assert_eq!(
                    e.param.as_deref(),
                    Some(path),
                    "{}: {why}: refused elsewhere: {e:?}",
                    self.resource
                );
                if let Some(code) = code {
                    assert_eq!(e.code, code, "{}: {why}: {e:?}", self.resource);
                }
            }
        }
    }

    /// Accepted as far as the field goes: a rule between fields may still
    /// refuse the record, but not at this field.
    fn accepted_at(&self, record: &Value, path: &str, why: &str) {
        if let Err(e) = self.parse(record) {
            assert_ne!(
                e.param.as_deref(),
                Some(path),
                "{}: {why}: refused {record}: {e:?}",
                self.resource
            );
        }
    }

    fn check(&mut self, bases: &[Value], at: &At, field: &Field) {
        let path = at.path(field.name);
        let base = bases
            .iter()
            .find(|b| at.object(&mut (*b).clone()).is_some())
            .unwrap_or_else(|| panic!("{}: no base record holds {path}", self.resource));
        self.parse(base)
            .unwrap_or_else(|e| panic!("{}: the base is refused: {e:?}", self.resource));

        // Read: a value of no field's type is refused at the field.
        let wrong = match field.kind {
            Kind::Object { .. } => json!(["not", "a value"]),
            _ => json!({"not": "a value"}),
        };
        for name in field.names() {
            let record = self.with(base, at, |o| {
                o.insert(name.clone(), wrong.clone());
            });
            self.refused_at(&record, &at.path(&name), None, "a value of the wrong type");
        }
        // An alias is read as its name, and errors name the alias; never
        // both at once.
        for (alias, name) in field.aliases {
            let record = self.with(base, at, |o| {
                o.remove(*name);
                o.insert((*alias).to_owned(), json!({"not": "a value"}));
            });
            self.refused_at(&record, &at.path(alias), None, "an alias of the wrong type");
            let record = self.with(base, at, |o| {
                let value = o.get(*name).cloned().unwrap_or(json!("x"));
                o.insert((*name).to_owned(), value.clone());
                o.insert((*alias).to_owned(), value);
            });
            self.refused_at(
                &record,
                &at.path(alias),
                Some("invalid_field"),
                "an alias beside its name",
            );
        }
        // Required: its absence is refused at the field.
        if field.required {
            let record = self.with(base, at, |o| {
                for name in field.names() {
                    o.remove(&name);
                }
            });
            let first = &field.names()[0];
            self.refused_at(
                &record,
                &at.path(first),
                Some("missing_required_field"),
                "absent",
            );
        }
        self.limits(base, at, field);
        self.checked.push(path);

        let inner = |index| {
            let mut inner = at.clone();
            inner.0.push((field.name.to_owned(), index));
            inner
        };
        match field.kind {
            Kind::Items { of, .. } => {
                for item in of {
                    self.check(bases, &inner(Some(0)), item);
                }
            }
            Kind::Object { of } => {
                for part in of {
                    self.check(bases, &inner(None), part);
                }
            }
            _ => {}
        }
    }

    fn limits(&self, base: &Value, at: &At, field: &Field) {
        let path = at.path(field.name);
        let set = |name: &str, value: Value| {
            self.with(base, at, |o| {
                for other in field.names() {
                    o.remove(&other);
                }
                o.insert(name.to_owned(), value);
            })
        };
        let text = |name: &str, max: usize| {
            // An email address is a string too: this one is one, at any length.
            let longest = format!("a@{}", "x".repeat(max - 2));
            self.accepted_at(&set(name, json!(longest)), &at.path(name), "the longest");
            self.refused_at(
                &set(name, json!(format!("{longest}x"))),
                &at.path(name),
                Some("field_too_long"),
                "one character too long",
            );
            // Blank is absent, as an export's empty cell: refused only where
            // the field is required.
            let blank = set(name, json!("   "));
            if field.required {
                match self.parse(&blank) {
                    Ok(_) => panic!("{}: blank {path} accepted", self.resource),
                    Err(e) => {
                        assert_eq!(e.code, "missing_required_field", "{}: {e:?}", self.resource)
                    }
                }
            } else {
                self.accepted_at(&blank, &at.path(name), "blank is absent");
            }
        };
        match field.kind {
            Kind::Text { max } => text(field.name, max),
            Kind::Texts { items, max } => {
                let first = format!("{path}[0]");
                self.accepted_at(
                    &set(field.name, json!(vec!["x".repeat(max); items])),
                    &path,
                    "the most, the longest",
                );
                self.refused_at(
                    &set(field.name, json!(vec!["x"; items + 1])),
                    &path,
                    Some("invalid_field"),
                    "one too many",
                );
                self.refused_at(
                    &set(field.name, json!(["x".repeat(max + 1)])),
                    &first,
                    Some("field_too_long"),
                    "one character too long",
                );
                self.refused_at(
                    &set(field.name, json!([1])),
                    &first,
                    Some("invalid_field"),
                    "not a string",
                );
            }
            Kind::Email { max } => {
                text(field.name, max);
                self.refused_at(
                    &set(field.name, json!("ap at acme")),
                    &path,
                    None,
                    "no address",
                );
            }
            Kind::Reference => {
                let names = field.names();
                text(&names[1], EXTERNAL_ID_MAX);
                self.refused_at(
                    &set(&names[0], json!("P-1")),
                    &at.path(&names[0]),
                    None,
                    "an id that is no UUID",
                );
                let both = self.with(base, at, |o| {
                    o.insert(
                        names[0].clone(),
                        json!("018f6a4e-0000-7000-8000-000000000000"),
                    );
                    o.insert(names[1].clone(), json!("X-1"));
                });
                self.refused_at(
                    &both,
                    &at.path(&names[0]),
                    None,
                    "both an id and an external id",
                );
            }
            Kind::GlAccount => {
                let names = field.names();
                text(&names[1], GL_NUMBER_MAX);
                self.refused_at(
                    &set(&names[0], json!("6010")),
                    &at.path(&names[0]),
                    None,
                    "an id that is no UUID",
                );
            }
            Kind::Enum(names) => {
                for name in names {
                    self.accepted_at(&set(field.name, json!(name)), &path, name);
                }
                self.refused_at(
                    &set(field.name, json!("none_of_them")),
                    &path,
                    Some("invalid_field"),
                    "no such value",
                );
            }
            Kind::Money | Kind::Positive => {
                self.accepted_at(
                    &set(field.name, json!("12.3456")),
                    &path,
                    "four decimal places",
                );
                self.refused_at(
                    &set(field.name, json!("12.34567")),
                    &path,
                    None,
                    "five decimal places",
                );
                self.refused_at(&set(field.name, json!(-1)), &path, None, "negative");
                self.refused_at(&set(field.name, json!("1e15")), &path, None, "too large");
                // Zero is a money field's own minimum; whether it is accepted
                // can also be a rule between fields (one side of a journal
                // line), so only a positive field's refusal is checked.
                if matches!(field.kind, Kind::Positive) {
                    self.refused_at(&set(field.name, json!(0)), &path, None, "zero");
                }
            }
            Kind::Percent => {
                for value in [json!(0), json!("8.25"), json!(100)] {
                    self.accepted_at(&set(field.name, value.clone()), &path, &value.to_string());
                }
                for value in [json!(-1), json!("100.0001"), json!("8.12345"), json!("8%")] {
                    self.refused_at(
                        &set(field.name, value.clone()),
                        &path,
                        Some("invalid_field"),
                        &value.to_string(),
                    );
                }
            }
            Kind::Count => {
                self.accepted_at(&set(field.name, json!(i32::MAX)), &path, "the largest");
                self.refused_at(&set(field.name, json!(0)), &path, None, "zero");
                self.refused_at(
                    &set(field.name, json!(i64::from(i32::MAX) + 1)),
                    &path,
                    None,
                    "too large",
                );
                self.refused_at(&set(field.name, json!(1.5)), &path, None, "a fraction");
            }
            Kind::Date => {
                self.accepted_at(&set(field.name, json!("2026-02-28")), &path, "a date");
                self.refused_at(
                    &set(field.name, json!("2026-02-30")),
                    &path,
                    None,
                    "no such day",
                );
            }
            Kind::DateOrTime => {
                for value in ["2026-02-28", "2026-02-28T23:30:00-05:00"] {
                    self.accepted_at(&set(field.name, json!(value)), &path, value);
                }
                for value in ["2026-02-30", "2026-02-28T25:00:00Z", "28/02/2026"] {
                    self.refused_at(&set(field.name, json!(value)), &path, None, value);
                }
            }
            Kind::Bool => {
                self.accepted_at(&set(field.name, json!(false)), &path, "false");
                self.refused_at(&set(field.name, json!("true")), &path, None, "a string");
            }
            Kind::Items { min, max, .. } => {
                let item = at
                    .object(&mut base.clone())
                    .and_then(|o| o.get(field.name).and_then(|l| l.get(0)).cloned())
                    .unwrap_or_else(|| json!({}));
                self.refused_at(
                    &set(field.name, json!(vec![item.clone(); max + 1])),
                    &path,
                    None,
                    "one item too many",
                );
                if min > 0 {
                    self.refused_at(
                        &set(field.name, json!(vec![item; min - 1])),
                        &path,
                        None,
                        "one item too few",
                    );
                }
            }
            Kind::Object { .. } => {
                self.refused_at(
                    &set(field.name, json!(["not", "an object"])),
                    &path,
                    Some("invalid_field"),
                    "an array",
                );
            }
        }
    }
}

#[test]
fn every_declared_field_is_read_required_and_limited_as_declared() {
    for resource in Resource::ALL {
        let mut checker = Checker {
            resource,
            checked: Vec::new(),
        };
        let bases = bases(resource);
        for field in fields(resource) {
            checker.check(&bases, &At::default(), field);
        }
        assert!(
            checker.checked.iter().any(|p| p.contains("[0].")),
            "{resource}: the nested fields were checked too: {:?}",
            checker.checked
        );
    }
}
