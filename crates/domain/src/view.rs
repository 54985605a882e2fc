//! What a read shows, declared once per readable thing: each resource's
//! `VIEW` sits beside its `FIELDS`, and the chart of accounts' in `ledger`.
//! A view lists the object's properties, each with its JSON name, the SQL
//! that computes it over the row `r`, its form and whether it can be null.
//! `read` builds the `jsonb_build_object` of every read from it, and the
//! OpenAPI document builds the object's schema from it, so the document
//! cannot show a property, a type or a null the reads do not return.

/// What a read shows of one readable thing.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// The `object` every one of them carries (`account`).
    pub object: &'static str,
    /// Its own properties, in order; [`View::properties`] adds those every
    /// one of them shows.
    pub shows: &'static [Shown],
    /// A record of a resource, with its provenance and `updated_at`; the
    /// chart's accounts have neither.
    pub record: bool,
}

/// One property of what a read shows.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    /// Its JSON name.
    pub name: &'static str,
    pub shows: Shows,
    /// Whether it can be null; it is present either way.
    pub nullable: bool,
    /// What the OpenAPI document says of it, besides its form.
    pub about: &'static str,
}

/// Where a property's value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Shows {
    /// An SQL expression over the row `r` (or over an item's row), shown in
    /// this form.
    Sql(&'static str, Form),
    /// Always this string.
    Const(&'static str),
    /// An array of objects, one per child row; empty when there is none.
    Items(Items),
}

/// The JSON form of a value, and how the SQL renders it.
#[derive(Debug, Clone, Copy)]
pub enum Form {
    Uuid,
    Text,
    /// An exact decimal (`numeric(19, 4)`), as a JSON number without trailing
    /// zeros (`trim_scale`): `5000`, `19.99`.
    Decimal,
    Integer,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339, in UTC, to the second.
    Timestamp,
    Bool,
    /// One of these names.
    Enum(&'static [&'static str]),
    /// An array of strings (a `text[]` column).
    Texts,
}

/// The child rows of an array property: `select ... from {from} where
/// {filter} order by {order_by}`, each row shown as an object of `of`.
#[derive(Debug, Clone, Copy)]
pub struct Items {
    /// The child table with its alias, and any joins.
    pub from: &'static str,
    /// The children of the row `r`.
    pub filter: &'static str,
    pub order_by: &'static str,
    pub of: &'static [Shown],
}

impl Shown {
    /// A value computed by `sql`, never null.
    pub const fn sql(name: &'static str, sql: &'static str, form: Form) -> Self {
        Self {
            name,
            shows: Shows::Sql(sql, form),
            nullable: false,
            about: "",
        }
    }

    /// An array of child rows.
    pub const fn items(name: &'static str, items: Items) -> Self {
        Self {
            name,
            shows: Shows::Items(items),
            nullable: false,
            about: "",
        }
    }

    /// The same property, null when its SQL is.
    pub const fn or_null(self) -> Self {
        Self {
            nullable: true,
            ..self
        }
    }

    /// The same property, with what the document says of it.
    pub const fn about(self, about: &'static str) -> Self {
        Self { about, ..self }
    }
}

const ID: Shown = Shown::sql("id", "r.id", Form::Uuid).about("The record's id.");
const CREATED_AT: Shown = Shown::sql("created_at", "r.created_at", Form::Timestamp);
/// Provenance and timestamps, common to every record.
const RECORD_TAIL: [Shown; 4] = [
    Shown::sql("external_source", "r.external_source", Form::Text)
        .or_null()
        .about("Provenance: the source system (null once replaced)."),
    Shown::sql("external_id", "r.external_id", Form::Text)
        .or_null()
        .about("Provenance: the id in the source system."),
    CREATED_AT,
    Shown::sql("updated_at", "r.updated_at", Form::Timestamp),
];

impl View {
    /// What a read of a resource's records shows.
    pub const fn record(object: &'static str, shows: &'static [Shown]) -> Self {
        Self {
            object,
            shows,
            record: true,
        }
    }

    /// What a read of rows without provenance shows.
    pub const fn without_provenance(object: &'static str, shows: &'static [Shown]) -> Self {
        Self {
            object,
            shows,
            record: false,
        }
    }

    /// Every property a read shows, in order: the id and the object, its
    /// own, then the provenance and timestamps.
    pub fn properties(&self) -> Vec<Shown> {
        let mut all = vec![
            ID,
            Shown {
                name: "object",
                shows: Shows::Const(self.object),
                nullable: false,
                about: "",
            },
        ];
        all.extend_from_slice(self.shows);
        if self.record {
            all.extend_from_slice(&RECORD_TAIL);
        } else {
            all.push(CREATED_AT);
        }
        all
    }
}
