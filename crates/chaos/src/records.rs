//! What the load submits: batches of records for the six resources, mostly
//! valid, with duplicates and invalid records mixed in.
//!
//! External ids come from growing pools, one per kind of record, so later
//! batches reuse the ids of earlier ones (the collisions the conflict modes
//! exist for) and a batch now and then repeats one of its own ids. Children
//! name their parents by external id, as a real migration does, and parents
//! are whatever earlier batches carried: whether a parent was stored is for
//! the service to find out.
//!
//! Only records broken in a way the import refuses before it looks anything up
//! (no `external_id`, a missing required field, an unbalanced entry, a zero
//! payment) are marked `must_fail`: every other outcome depends on what earlier
//! jobs stored, and that is the service's to decide.

use std::collections::{BTreeSet, HashMap};

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

/// The external source of every record the load submits.
pub const SOURCE: &str = "chaos";

/// Share of records the generator breaks on purpose, in the half of the
/// batches that have any.
const BROKEN_SHARE: f64 = 0.10;
/// Share of batches that are large and clean (see `next_batch`).
const LARGE_SHARE: f64 = 0.08;
/// Share of records that repeat an external id seen earlier in the same batch.
const REPEAT_IN_BATCH: f64 = 0.04;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Accounts,
    Products,
    Orders,
    JournalEntries,
    VendorBills,
    ApPayments,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::Accounts,
        Resource::Products,
        Resource::Orders,
        Resource::JournalEntries,
        Resource::VendorBills,
        Resource::ApPayments,
    ];

    /// The name in URLs, job objects, routing keys and queue names.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Accounts => "accounts",
            Resource::Products => "products",
            Resource::Orders => "orders",
            Resource::JournalEntries => "journal-entries",
            Resource::VendorBills => "vendor-bills",
            Resource::ApPayments => "ap-payments",
        }
    }

    /// The table its records land in, with the provenance columns
    /// `external_source` and `external_id` (see `migrations/`).
    pub fn table(self) -> &'static str {
        match self {
            Resource::Accounts => "accounts",
            Resource::Products => "products",
            Resource::Orders => "orders",
            Resource::JournalEntries => "journal_entries",
            Resource::VendorBills => "vendor_bills",
            Resource::ApPayments => "ap_payments",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictMode {
    Skip,
    Update,
    Replace,
    Error,
}

impl ConflictMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictMode::Skip => "skip",
            ConflictMode::Update => "update",
            ConflictMode::Replace => "replace",
            ConflictMode::Error => "error",
        }
    }
}

/// One bulk request.
#[derive(Debug)]
pub struct Batch {
    pub resource: Resource,
    pub conflict_mode: ConflictMode,
    pub records: Vec<Value>,
    /// Indexes of the records the import must refuse, whatever the database holds.
    pub must_fail: BTreeSet<u32>,
}

impl Batch {
    /// The request body. A retry must send these very bytes: the API
    /// fingerprints the body to match a retry to its Idempotency-Key.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "records": self.records,
            "external_source": SOURCE,
            "conflict_mode": self.conflict_mode.as_str(),
        }))
        .expect("a JSON value serializes")
    }

    /// The external id record `index` was submitted with, if it had one.
    pub fn external_id(&self, index: usize) -> Option<&str> {
        self.records
            .get(index)
            .and_then(|r| r.get("external_id"))
            .and_then(Value::as_str)
    }
}

/// The ids of one kind of record: `<prefix>-<n>`, handed out in order and
/// remembered, so they can be reused and referenced.
#[derive(Debug)]
struct Pool {
    prefix: &'static str,
    next: u32,
    used: Vec<String>,
}

impl Pool {
    fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            next: 0,
            used: Vec::new(),
        }
    }

    fn fresh(&mut self) -> String {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        self.used.push(id.clone());
        id
    }

    /// An id used before with probability `reuse`, else a fresh one.
    fn pick(&mut self, rng: &mut StdRng, reuse: f64) -> String {
        match self.used.choose(rng) {
            Some(id) if rng.random_bool(reuse) => id.clone(),
            _ => self.fresh(),
        }
    }

    /// An id to reference: one used before, or the first there will be. The
    /// older half, whose jobs have more likely been loaded by now.
    fn reference(&self, rng: &mut StdRng) -> String {
        self.used[..self.used.len().div_ceil(2)]
            .choose(rng)
            .cloned()
            .unwrap_or_else(|| format!("{}-0", self.prefix))
    }
}

/// Makes batches. Deterministic for a seed; what the service makes of them
/// depends on timing.
pub struct Generator {
    rng: StdRng,
    customers: Pool,
    vendors: Pool,
    products: Pool,
    orders: Pool,
    entries: Pool,
    bills: Pool,
    payments: Pool,
    /// Each bill's vendor, fixed when the bill id is first used, so payments
    /// can apply to bills of their own vendor.
    bill_vendor: HashMap<String, String>,
    /// Each payment's bill, fixed likewise, so an update keeps its vendor.
    payment_bill: HashMap<String, String>,
    /// Numbers fresh SKUs.
    skus: u32,
    /// Accounts of one kind only (vendors if true), while a large batch is made.
    vendors_only: Option<bool>,
}

impl Generator {
    pub fn new(rng: StdRng) -> Self {
        Self {
            rng,
            customers: Pool::new("C"),
            vendors: Pool::new("V"),
            products: Pool::new("P"),
            orders: Pool::new("O"),
            entries: Pool::new("JE"),
            bills: Pool::new("B"),
            payments: Pool::new("PAY"),
            bill_vendor: HashMap::new(),
            payment_bill: HashMap::new(),
            skus: 0,
            vendors_only: None,
        }
    }

    /// A batch of a random resource in a random conflict mode (`error` less
    /// often: most of its batches abort on a collision). Half of them have
    /// records broken on purpose, the other half can complete.
    ///
    /// Now and then a large batch of master data instead, clean and in
    /// `skip` or `update` mode: a job long enough to be taken over half-way
    /// from a stalled worker, whose chunks mostly fail no record, so that a
    /// stale write of the stalled worker would be counted rather than stopped
    /// by a duplicate error row.
    pub fn next_batch(&mut self) -> Batch {
        if self.rng.random_bool(LARGE_SHARE) {
            let resource = *[
                Resource::Accounts,
                Resource::Products,
                Resource::JournalEntries,
            ]
            .choose(&mut self.rng)
            .expect("not empty");
            let mode = *[ConflictMode::Skip, ConflictMode::Update]
                .choose(&mut self.rng)
                .expect("not empty");
            let size = self.rng.random_range(300..=1000);
            // One kind of account per large batch (customers, then vendors,
            // as migrations go): numbering locks one sequence, so the job
            // waits for others but never deadlocks with them, and a takeover
            // is not drowned in deadlock retries.
            self.vendors_only = Some(self.rng.random_bool(0.35));
            let batch = self.batch(resource, mode, size, 0.0);
            self.vendors_only = None;
            return batch;
        }
        let resource = *[
            (Resource::Accounts, 15),
            (Resource::Products, 15),
            (Resource::Orders, 20),
            (Resource::JournalEntries, 15),
            (Resource::VendorBills, 20),
            (Resource::ApPayments, 15),
        ]
        .choose_weighted(&mut self.rng, |w| w.1)
        .map(|w| &w.0)
        .expect("weights are positive");
        let mode = *[
            (ConflictMode::Skip, 35),
            (ConflictMode::Update, 30),
            (ConflictMode::Replace, 25),
            (ConflictMode::Error, 10),
        ]
        .choose_weighted(&mut self.rng, |w| w.1)
        .map(|w| &w.0)
        .expect("weights are positive");
        let size = self.rng.random_range(20..=200);
        let broken_share = if self.rng.random_bool(0.5) {
            BROKEN_SHARE
        } else {
            0.0
        };
        self.batch(resource, mode, size, broken_share)
    }

    /// A batch with `broken_share` of its records broken on purpose.
    pub fn batch(
        &mut self,
        resource: Resource,
        conflict_mode: ConflictMode,
        size: usize,
        broken_share: f64,
    ) -> Batch {
        // Error-mode batches reuse few ids, so that some of them get through.
        let reuse = if conflict_mode == ConflictMode::Error {
            0.02
        } else {
            0.3
        };
        let mut records: Vec<Value> = Vec::with_capacity(size);
        let mut must_fail = BTreeSet::new();
        for index in 0..size {
            let repeated = if index > 0 && self.rng.random_bool(REPEAT_IN_BATCH) {
                records
                    .choose(&mut self.rng)
                    .and_then(|r| r["external_id"].as_str())
                    .map(str::to_owned)
            } else {
                None
            };
            let mut record = match resource {
                Resource::Accounts => {
                    let id = repeated.unwrap_or_else(|| {
                        let vendor = match self.vendors_only {
                            Some(only) => only,
                            None => self.rng.random_bool(0.35),
                        };
                        let pool = if vendor {
                            &mut self.vendors
                        } else {
                            &mut self.customers
                        };
                        pool.pick(&mut self.rng, reuse)
                    });
                    self.account(&id)
                }
                Resource::Products => {
                    let id = repeated.unwrap_or_else(|| self.products.pick(&mut self.rng, reuse));
                    self.product(&id, conflict_mode)
                }
                Resource::Orders => {
                    let id = repeated.unwrap_or_else(|| self.orders.pick(&mut self.rng, reuse));
                    self.order(&id)
                }
                Resource::JournalEntries => {
                    let id = repeated.unwrap_or_else(|| self.entries.pick(&mut self.rng, reuse));
                    self.entry(&id)
                }
                Resource::VendorBills => {
                    let id = repeated.unwrap_or_else(|| self.bills.pick(&mut self.rng, reuse));
                    self.bill(&id)
                }
                Resource::ApPayments => {
                    let id = repeated.unwrap_or_else(|| self.payments.pick(&mut self.rng, reuse));
                    self.payment(&id)
                }
            };
            if self.rng.random_bool(broken_share) && self.break_record(resource, &mut record) {
                must_fail.insert(u32::try_from(index).expect("at most 1000 records"));
            }
            records.push(record);
        }
        Batch {
            resource,
            conflict_mode,
            records,
            must_fail,
        }
    }

    fn account(&mut self, id: &str) -> Value {
        if id.starts_with("V-") {
            return json!({"external_id": id, "name": format!("Vendor {id}"), "account_type": "vendor"});
        }
        let kind = *["business", "individual", "lead"]
            .choose(&mut self.rng)
            .expect("not empty");
        let mut account = json!({
            "external_id": id, "name": format!("Customer {id}"), "account_type": kind,
            "email": format!("{}@example.test", id.to_lowercase()),
            "credit_limit": self.rng.random_range(1..100) * 100,
        });
        if self.rng.random_bool(0.3) {
            account["addresses"] = json!([
                {"type": "billing", "line1": "1 Main St", "city": "Springfield", "is_default_billing": true},
                {"type": "shipping", "line1": "2 Dock Rd", "is_default_shipping": true},
            ]);
        }
        account
    }

    fn product(&mut self, id: &str, mode: ConflictMode) -> Value {
        // A replacement with the old SKU fails with duplicate_sku (the old
        // record keeps it): half of them take a fresh one.
        let sku = if mode == ConflictMode::Replace && self.rng.random_bool(0.5) {
            self.skus += 1;
            format!("SKU-{id}-{}", self.skus)
        } else {
            format!("SKU-{id}")
        };
        let component = self
            .products
            .used
            .choose(&mut self.rng)
            .filter(|c| c.as_str() != id)
            .cloned();
        match component {
            Some(component) if self.rng.random_bool(0.1) => json!({
                "external_id": id, "title": format!("Kit {id}"), "product_type": "kit", "sku": sku,
                "components": [{"product_external_id": component, "quantity": 2}],
            }),
            _ => json!({
                "external_id": id, "title": format!("Product {id}"),
                "product_type": if self.rng.random_bool(0.8) { "physical" } else { "service" },
                "sku": sku, "list_price": self.rng.random_range(5..100), "cost": 3,
            }),
        }
    }

    fn order(&mut self, id: &str) -> Value {
        let lines: Vec<Value> = (0..self.rng.random_range(1..=3))
            .map(|_| {
                json!({"product_external_id": self.products.reference(&mut self.rng),
                       "quantity": self.rng.random_range(1..=5),
                       "sell_rate": self.rng.random_range(10..50)})
            })
            .collect();
        json!({
            "external_id": id,
            "document_type": *["sales_order", "invoice", "quote"].choose(&mut self.rng).expect("not empty"),
            "account_external_id": self.customers.reference(&mut self.rng),
            "order_date": "2026-01-15", "notes": "chaos", "line_items": lines,
        })
    }

    fn entry(&mut self, id: &str) -> Value {
        let expense = *["6010", "6020", "6030", "6040"]
            .choose(&mut self.rng)
            .expect("not empty");
        let amount = self.rng.random_range(10..1000);
        let part = self.rng.random_range(1..amount);
        json!({
            "external_id": id, "entry_date": "2026-01-20", "description": "chaos",
            "lines": [
                {"gl_account_number": expense, "debit_amount": amount},
                {"gl_account_number": "1010", "credit_amount": part},
                {"gl_account_number": "2010", "credit_amount": amount - part},
            ],
        })
    }

    fn bill(&mut self, id: &str) -> Value {
        let vendor = match self.bill_vendor.get(id) {
            Some(vendor) => vendor.clone(),
            None => {
                let vendor = self.vendors.reference(&mut self.rng);
                self.bill_vendor.insert(id.to_owned(), vendor.clone());
                vendor
            }
        };
        json!({
            "external_id": id, "vendor_external_id": vendor,
            "bill_date": "2026-01-10", "due_date": "2026-02-10",
            "vendor_invoice_number": format!("INV-{id}"),
            "items": [{"description": "Supplies", "quantity": 1,
                       "unit_cost": self.rng.random_range(200..900), "gl_account_number": "6030"}],
        })
    }

    fn payment(&mut self, id: &str) -> Value {
        let bill = match self.payment_bill.get(id) {
            Some(bill) => bill.clone(),
            None => {
                let bill = self.bills.reference(&mut self.rng);
                self.payment_bill.insert(id.to_owned(), bill.clone());
                bill
            }
        };
        // A bill referenced before any was generated has no vendor yet.
        let vendor = self
            .bill_vendor
            .get(&bill)
            .cloned()
            .unwrap_or_else(|| self.vendors.reference(&mut self.rng));
        let amount = self.rng.random_range(1..=5);
        json!({
            "external_id": id, "vendor_external_id": vendor, "payment_date": "2026-01-20",
            "amount": amount, "method": "ach", "reference": format!("REF-{id}"),
            "applications": [{"bill_external_id": bill, "amount": amount}],
        })
    }

    /// Breaks a record; true when the import must refuse it whatever the
    /// database holds (it fails before any look-up).
    fn break_record(&mut self, resource: Resource, record: &mut Value) -> bool {
        let object = record.as_object_mut().expect("records are objects");
        match self.rng.random_range(0..3) {
            0 => {
                object.remove("external_id");
                true
            }
            1 => {
                match resource {
                    Resource::Accounts => object.remove("name"),
                    Resource::Products => object.remove("title"),
                    // order_date may be absent; a day that does not exist
                    // is refused.
                    Resource::Orders => object.insert("order_date".into(), json!("2026-02-30")),
                    Resource::JournalEntries => object.insert(
                        "lines".into(),
                        json!([
                            {"gl_account_number": "6010", "debit_amount": 500},
                            {"gl_account_number": "1010", "credit_amount": 300},
                        ]),
                    ),
                    Resource::VendorBills => object.remove("bill_date"),
                    Resource::ApPayments => object.insert("amount".into(), json!(0)),
                };
                true
            }
            _ => {
                // A reference to nothing: refused only if the record is not
                // skipped as a duplicate first, so not a must-fail.
                match resource {
                    Resource::Accounts => {
                        object.insert("email".into(), json!("not an email"));
                        return true;
                    }
                    Resource::Products => object.insert(
                        "components".into(),
                        json!([{"product_external_id": "P-MISSING", "quantity": 1}]),
                    ),
                    Resource::Orders => {
                        object.insert("account_external_id".into(), json!("C-MISSING"))
                    }
                    Resource::JournalEntries => object.insert(
                        "lines".into(),
                        json!([
                            {"gl_account_number": "6010", "debit_amount": 10},
                            {"gl_account_number": "9999", "credit_amount": 10},
                        ]),
                    ),
                    Resource::VendorBills => {
                        object.insert("vendor_external_id".into(), json!("V-MISSING"))
                    }
                    Resource::ApPayments => object.insert(
                        "applications".into(),
                        json!([{"bill_external_id": "B-MISSING", "amount": 1}]),
                    ),
                };
                false
            }
        }
    }
}
