//! Products: the canonical create and update handlers and their rules.
//!
//! Rules: `title` and `product_type` are required; `sku`, when given, is unique
//! per entity and mode (variants included); `components` belong to kits and
//! boxes only and reference other products of the entity by id or by external
//! id from the same source; `variants` belong to variant parents only and are
//! stored as products of their own that live and die with their parent.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::accounts::vendor_of;
use crate::canonical::{
    Applied, Canonical, Item, Outcome, Provenance, WriteContext, existing_by_provenance,
};
use crate::error::{RecordError, violated_constraint};
use crate::fields::{Fields, INVALID, MISSING};
use crate::named::{Named, named_enum};
use crate::plan::{column, decide_in_order};
use crate::refs::{RefField, RefIndex, parse_ref};
use crate::spec::{Field, Kind};
use crate::view::{Form, Items, Shown, View};
use crate::{ConflictMode, Tenant, new_id};

/// Components or variants one product may list.
const PARTS_MAX: usize = 500;

const TITLE: Field = Field::required("title", Kind::Text { max: 255 }, "");
const PRODUCT_TYPE: Field = Field::required(
    "product_type",
    Kind::Enum(ProductType::NAMES),
    "Product type.",
);
const SKU: Field = Field::optional(
    "sku",
    Kind::Text { max: 100 },
    "Unique per entity and mode, variants included.",
);
const DESCRIPTION: Field = Field::optional("description", Kind::Text { max: 10_000 }, "");
const LIST_PRICE: Field = Field::optional("list_price", Kind::Money, "List price.");
const COST: Field = Field::optional("cost", Kind::Money, "Cost.");
const COMPONENT_PRODUCT: Field =
    Field::required("product", Kind::Reference, "The component product.").aliased(&[
        ("component_product_id", "product_id"),
        ("component_product_external_id", "product_external_id"),
    ]);
const COMPONENT_QUANTITY: Field = Field::required("quantity", Kind::Positive, "");
const COMPONENTS: Field = Field::optional(
    "components",
    Kind::Items {
        min: 0,
        max: PARTS_MAX,
        of: &[COMPONENT_PRODUCT, COMPONENT_QUANTITY],
    },
    "Kits and boxes only; may name a product earlier in the same batch.",
);
// The vendor's creating-products-kits-variants guide: price tiers, each for
// a pricing level or an account, from a minimum quantity.
const PRICING_LEVEL: Field = Field::optional(
    "pricing_level_id",
    Kind::Text { max: 100 },
    "The ERP's pricing level, kept as given (pricing levels are not loaded through this service); this or an account.",
);
const PRICING_ACCOUNT: Field = Field::optional(
    "account",
    Kind::Reference,
    "An account's own price instead of a level's; this or pricing_level_id.",
);
const MIN_QUANTITY: Field = Field::optional(
    "min_quantity",
    Kind::Count,
    "The quantity from which the tier applies; default 1, once per level or account.",
);
const TIER_LIST_PRICE: Field = Field::optional("list_price", Kind::Money, "The price of the tier.");
const SELL_PRICE: Field = Field::optional("sell_price", Kind::Money, "Overrides list_price.");
const PRICING: Field = Field::optional(
    "pricing",
    Kind::Items {
        min: 0,
        max: PARTS_MAX,
        of: &[
            PRICING_LEVEL,
            PRICING_ACCOUNT,
            MIN_QUANTITY,
            TIER_LIST_PRICE,
            SELL_PRICE,
        ],
    },
    "Price tiers; replaced as one unit on update.",
);
// The same guide: who sells the product, under which sku, at what cost.
const VENDOR: Field = Field::required("vendor", Kind::Reference, "A vendor account.");
const VENDOR_SKU: Field = Field::optional("vendor_sku", Kind::Text { max: 100 }, "");
const DEFAULT_UNIT_COST: Field = Field::optional("default_unit_cost", Kind::Money, "");
const VENDORS: Field = Field::optional(
    "vendors",
    Kind::Items {
        min: 0,
        max: PARTS_MAX,
        of: &[VENDOR, VENDOR_SKU, DEFAULT_UNIT_COST],
    },
    "Who sells it; replaced as one unit on update.",
);
const VARIANT_TYPE: Field = Field::required("product_type", Kind::Enum(VariantType::NAMES), "");
const VARIANTS: Field = Field::optional(
    "variants",
    Kind::Items {
        min: 0,
        max: PARTS_MAX,
        of: &[TITLE, SKU, VARIANT_TYPE, COMPONENTS, PRICING, VENDORS],
    },
    "Variant parents only; a kit or box variant has its own components.",
);

/// The fields of a product record.
pub const FIELDS: &[Field] = &[
    TITLE,
    PRODUCT_TYPE,
    SKU,
    DESCRIPTION,
    LIST_PRICE,
    COST,
    COMPONENTS,
    PRICING,
    VENDORS,
    VARIANTS,
];

/// What a read shows of the components of a product or variant `$owner`
/// (the row's alias), read as `$c`.
macro_rules! components_shown {
    ($owner:literal, $c:literal) => {
        Shown::items(
            "components",
            Items {
                from: concat!("product_components ", $c),
                filter: concat!($c, ".product_id = ", $owner, ".id"),
                order_by: concat!($c, ".position"),
                of: &[
                    Shown::sql(
                        "product_id",
                        concat!($c, ".component_product_id"),
                        Form::Uuid,
                    ),
                    Shown::sql("quantity", concat!($c, ".quantity"), Form::Decimal),
                ],
            },
        )
        .about("Kits and boxes: the products it is made of, in order.")
    };
}

/// The same for its price tiers.
macro_rules! pricing_shown {
    ($owner:literal, $t:literal) => {
        Shown::items(
            "pricing",
            Items {
                from: concat!("product_pricing ", $t),
                filter: concat!($t, ".product_id = ", $owner, ".id"),
                order_by: concat!($t, ".position"),
                of: &[
                    Shown::sql(
                        "pricing_level_id",
                        concat!($t, ".pricing_level_id"),
                        Form::Text,
                    )
                    .or_null(),
                    Shown::sql("account_id", concat!($t, ".account_id"), Form::Uuid).or_null(),
                    Shown::sql("min_quantity", concat!($t, ".min_quantity"), Form::Integer),
                    Shown::sql("list_price", concat!($t, ".list_price"), Form::Decimal).or_null(),
                    Shown::sql("sell_price", concat!($t, ".sell_price"), Form::Decimal).or_null(),
                ],
            },
        )
        .about("Price tiers, in order.")
    };
}

/// The same for its vendors.
macro_rules! vendors_shown {
    ($owner:literal, $v:literal) => {
        Shown::items(
            "vendors",
            Items {
                from: concat!("product_vendors ", $v),
                filter: concat!($v, ".product_id = ", $owner, ".id"),
                order_by: concat!($v, ".position"),
                of: &[
                    Shown::sql("vendor_id", concat!($v, ".vendor_id"), Form::Uuid),
                    Shown::sql("vendor_sku", concat!($v, ".vendor_sku"), Form::Text).or_null(),
                    Shown::sql(
                        "default_unit_cost",
                        concat!($v, ".default_unit_cost"),
                        Form::Decimal,
                    )
                    .or_null(),
                ],
            },
        )
        .about("Who sells it, in order.")
    };
}

/// What a read of a product shows; its variants are shown in it, not as
/// records of their own.
pub const VIEW: View = View::record(
    "product",
    &[
        Shown::sql("title", "r.title", Form::Text),
        Shown::sql(
            "product_type",
            "r.product_type",
            Form::Enum(ProductType::NAMES),
        ),
        Shown::sql("sku", "r.sku", Form::Text).or_null(),
        Shown::sql("description", "r.description", Form::Text).or_null(),
        Shown::sql("list_price", "r.list_price", Form::Decimal).or_null(),
        Shown::sql("cost", "r.cost", Form::Decimal).or_null(),
        components_shown!("r", "c"),
        pricing_shown!("r", "pt"),
        vendors_shown!("r", "pv"),
        Shown::items(
            "variants",
            Items {
                from: "products v",
                filter: "v.parent_product_id = r.id",
                order_by: "v.created_at, v.id",
                of: &[
                    Shown::sql("id", "v.id", Form::Uuid),
                    Shown::sql("title", "v.title", Form::Text),
                    Shown::sql("sku", "v.sku", Form::Text).or_null(),
                    Shown::sql(
                        "product_type",
                        "v.product_type",
                        Form::Enum(VariantType::NAMES),
                    ),
                    components_shown!("v", "vc"),
                    pricing_shown!("v", "vt"),
                    vendors_shown!("v", "vv"),
                ],
            },
        )
        .about("Variant parents: the variants, oldest first."),
    ],
);

pub const DUPLICATE_SKU: &str = "duplicate_sku";

named_enum! {
    pub enum ProductType {
        Physical = "physical",
        Service = "service",
        Kit = "kit",
        Box = "box",
        VariantParent = "variant_parent",
    }
}

named_enum! {
    /// What a variant may be: a variant has neither components nor variants.
    pub enum VariantType {
        Physical = "physical",
        Service = "service",
        Kit = "kit",
        Box = "box",
    }
}

impl ProductInput {
    /// The product's parts, then each variant's.
    fn all_parts(&self) -> impl Iterator<Item = &Parts> {
        std::iter::once(&self.parts).chain(self.variants.iter().map(|v| &v.parts))
    }
}

impl ProductType {
    fn has_components(self) -> bool {
        matches!(self, ProductType::Kit | ProductType::Box)
    }
}

impl From<VariantType> for ProductType {
    fn from(t: VariantType) -> Self {
        match t {
            VariantType::Physical => ProductType::Physical,
            VariantType::Service => ProductType::Service,
            VariantType::Kit => ProductType::Kit,
            VariantType::Box => ProductType::Box,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentInput {
    /// `product_id` or `product_external_id`.
    pub product: RefField,
    pub quantity: Decimal,
}

/// A price tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierInput {
    pub pricing_level_id: Option<String>,
    pub account: Option<RefField>,
    pub min_quantity: i32,
    pub list_price: Option<Decimal>,
    pub sell_price: Option<Decimal>,
}

/// A vendor of the product.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorInput {
    pub vendor: RefField,
    pub vendor_sku: Option<String>,
    pub default_unit_cost: Option<Decimal>,
}

/// What a product or a variant is made of, priced at and bought from.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub components: Vec<ComponentInput>,
    pub pricing: Vec<TierInput>,
    pub vendors: Vec<VendorInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariantInput {
    pub title: String,
    pub sku: Option<String>,
    pub product_type: ProductType,
    pub parts: Parts,
}

/// A validated product payload: what both create and update take.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductInput {
    pub title: String,
    pub product_type: ProductType,
    pub sku: Option<String>,
    pub description: Option<String>,
    pub list_price: Option<Decimal>,
    pub cost: Option<Decimal>,
    pub parts: Parts,
    pub variants: Vec<VariantInput>,
}

impl ProductInput {
    /// Checks every rule that needs no database. Fields no declaration reads
    /// do not stop the record, so exports from other systems load as they
    /// are; the import reports them (`import::ignored_fields`).
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::record(record, FIELDS)?;
        let title = f.required_string(&TITLE)?;
        let product_type: ProductType = f.required_enum(&PRODUCT_TYPE)?;
        let sku = f.optional_string(&SKU)?;
        let description = f.optional_string(&DESCRIPTION)?;
        let list_price = f.optional_money(&LIST_PRICE)?;
        let cost = f.optional_money(&COST)?;

        let parts = parse_parts(&f, product_type)?;
        let variants = f.parse_items(&VARIANTS, parse_variant)?;
        if !variants.is_empty() && product_type != ProductType::VariantParent {
            return Err(RecordError::at(
                "variants_not_allowed",
                "variants",
                format!(
                    "only variant_parent products have variants; this product is {}",
                    product_type.as_str()
                ),
            ));
        }

        Ok(Self {
            title,
            product_type,
            sku,
            description,
            list_price,
            cost,
            parts,
            variants,
        })
    }
}

fn parse_component(f: &Fields<'_>) -> Result<ComponentInput, RecordError> {
    Ok(ComponentInput {
        product: parse_ref(f, &COMPONENT_PRODUCT)?.expect("a required reference is present"),
        quantity: f.required_positive(&COMPONENT_QUANTITY)?,
    })
}

fn parse_variant(f: &Fields<'_>) -> Result<VariantInput, RecordError> {
    let title = f.required_string(&TITLE)?;
    let sku = f.optional_string(&SKU)?;
    let product_type = f.required_enum::<VariantType>(&VARIANT_TYPE)?.into();
    Ok(VariantInput {
        title,
        sku,
        product_type,
        parts: parse_parts(f, product_type)?,
    })
}

/// The components, price tiers and vendors of a product or a variant of
/// `product_type`.
fn parse_parts(f: &Fields<'_>, product_type: ProductType) -> Result<Parts, RecordError> {
    let components = f.parse_items(&COMPONENTS, parse_component)?;
    if !components.is_empty() && !product_type.has_components() {
        return Err(RecordError::at(
            "components_not_allowed",
            "components",
            format!(
                "only kit and box products have components; this product is {}",
                product_type.as_str()
            ),
        ));
    }
    let pricing = f.parse_items(&PRICING, parse_tier)?;
    for (i, tier) in pricing.iter().enumerate() {
        let twin = pricing[..i].iter().any(|t| {
            t.min_quantity == tier.min_quantity
                && t.pricing_level_id == tier.pricing_level_id
                && t.account == tier.account
        });
        if twin {
            return Err(RecordError::at(
                "duplicate_min_quantity",
                format!("pricing[{i}].min_quantity"),
                format!(
                    "another tier of the same pricing level or account starts at {}",
                    tier.min_quantity
                ),
            ));
        }
    }
    let vendors = f.parse_items(&VENDORS, |v| {
        Ok(VendorInput {
            vendor: parse_ref(v, &VENDOR)?.expect("a required reference is present"),
            vendor_sku: v.optional_string(&VENDOR_SKU)?,
            default_unit_cost: v.optional_money(&DEFAULT_UNIT_COST)?,
        })
    })?;
    Ok(Parts {
        components,
        pricing,
        vendors,
    })
}

fn parse_tier(f: &Fields<'_>) -> Result<TierInput, RecordError> {
    let pricing_level_id = f.optional_string(&PRICING_LEVEL)?;
    let account = parse_ref(f, &PRICING_ACCOUNT)?;
    let one_of = "a tier is for a pricing_level_id or for an account (account_id or \
                  account_external_id): one of them";
    match (&pricing_level_id, &account) {
        // The tier as a whole: neither field is wrong on its own.
        (None, None) => return Err(RecordError::new(MISSING, one_of)),
        (Some(_), Some(_)) => return Err(RecordError::at(INVALID, "pricing_level_id", one_of)),
        _ => {}
    }
    Ok(TierInput {
        pricing_level_id,
        account,
        min_quantity: f.optional_count(&MIN_QUANTITY)?.unwrap_or(1),
        list_price: f.optional_money(&TIER_LIST_PRICE)?,
        sell_price: f.optional_money(&SELL_PRICE)?,
    })
}

/// The product resource: a set-based batch handler.
pub struct Products;

impl Canonical for Products {
    type Input = ProductInput;
    const TABLE: &'static str = "products";
    const FIELDS: &'static [Field] = FIELDS;

    fn parse(record: &Value) -> Result<ProductInput, RecordError> {
        ProductInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, ProductInput>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        let mut batch = Batch::load(conn, ctx, items).await?;
        let (outcomes, write) = decide_in_order(items, |item| batch.apply(ctx, conflict, item));
        if write {
            batch.write(conn, ctx.tenant).await?;
        }
        Ok(outcomes)
    }

    fn constraint_error(err: &sqlx::Error) -> Option<RecordError> {
        constraint_error(err)
    }
}

/// A product as the batch leaves it.
struct Row<'a> {
    id: Uuid,
    input: &'a ProductInput,
    /// Set on new rows only: an update keeps the stored provenance.
    provenance: Option<Provenance<'a>>,
    /// Not in the database before the batch.
    new: bool,
    /// The product's parts, then each variant's, references resolved.
    parts: Vec<ResolvedParts>,
    variant_ids: Vec<Uuid>,
}

/// A product's or a variant's parts with their references resolved: each
/// component's product and quantity, each tier's account, each vendor.
struct ResolvedParts {
    components: Vec<(Uuid, Decimal)>,
    tier_accounts: Vec<Option<Uuid>>,
    vendors: Vec<Uuid>,
}

/// Who holds a sku: the product row, and the product it belongs to (the
/// variant's parent, or the row itself).
#[derive(Debug, Clone, Copy)]
struct Holder {
    row: Uuid,
    product: Uuid,
}

/// A batch of products: what it read, and what its records have done so far.
/// Records are decided one after the other against this state, which is the
/// database as the records before them left it.
struct Batch<'a> {
    /// The product each provenance of the batch names now; `None` once a
    /// replace has cleared it.
    provenance: HashMap<(&'a str, &'a str), Option<Uuid>>,
    /// The holder of each sku the batch mentions; `None` once freed.
    skus: HashMap<String, Option<Holder>>,
    /// The skus each product holds, its variants' included.
    held: HashMap<Uuid, Vec<String>>,
    components: RefIndex<bool>,
    /// The accounts of the price tiers and the vendors, with their types.
    accounts: RefIndex<String>,
    rows: Vec<Row<'a>>,
    row_of: HashMap<Uuid, usize>,
    /// Stored products whose provenance a replace clears.
    cleared: Vec<Uuid>,
}

impl<'a> Batch<'a> {
    /// Reads what the batch needs with one query per kind of look-up.
    async fn load(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        items: &'a [Item<'a, ProductInput>],
    ) -> Result<Self, sqlx::Error> {
        let provenance = existing_by_provenance(conn, "products", ctx.tenant, items)
            .await?
            .into_iter()
            .map(|(key, id)| (key, Some(id)))
            .collect();
        let mut wanted: Vec<&str> = items
            .iter()
            .flat_map(|i| {
                let input = &i.input;
                input
                    .sku
                    .iter()
                    .chain(input.variants.iter().filter_map(|v| v.sku.as_ref()))
            })
            .map(String::as_str)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        // Each sku sought on its own in the sku index (`import::plan_without_statistics`).
        let holders: Vec<(String, Uuid, Uuid)> = if wanted.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "select k.sku, p.id, p.product
                 from unnest($3::text[]) as k (sku)
                 cross join lateral (
                     select id, coalesce(parent_product_id, id) as product from products
                     where entity_id = $1 and mode = $2 and sku = k.sku
                     offset 0
                 ) as p",
            )
            .bind(ctx.tenant.entity_id)
            .bind(ctx.tenant.mode.as_str())
            .bind(&wanted)
            .fetch_all(&mut *conn)
            .await?
        };
        let mut skus = HashMap::new();
        let mut held: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (sku, row, product) in holders {
            held.entry(product).or_default().push(sku.clone());
            skus.insert(sku, Some(Holder { row, product }));
        }
        let parts = || items.iter().flat_map(|i| i.input.all_parts());
        let refs: Vec<&RefField> = parts()
            .flat_map(|p| &p.components)
            .map(|c| &c.product)
            .collect();
        let components = RefIndex::load(conn, ctx, "products", "true", &refs).await?;
        let refs: Vec<&RefField> = parts()
            .flat_map(|p| {
                let tiers = p.pricing.iter().filter_map(|t| t.account.as_ref());
                tiers.chain(p.vendors.iter().map(|v| &v.vendor))
            })
            .collect();
        let accounts = RefIndex::load(conn, ctx, "accounts", "account_type", &refs).await?;
        Ok(Self {
            provenance,
            skus,
            held,
            components,
            accounts,
            rows: Vec::with_capacity(items.len()),
            row_of: HashMap::with_capacity(items.len()),
            cleared: Vec::new(),
        })
    }

    /// Decides one record against the batch so far, and takes its effects
    /// into the batch when it succeeds.
    fn apply(
        &mut self,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        item: &'a Item<'a, ProductInput>,
    ) -> Applied {
        let key = item.provenance.map(|p| (p.source, p.external_id));
        let existing = key.and_then(|k| self.provenance.get(&k).copied().flatten());
        let result = match (existing, conflict) {
            (None, _) => self
                .create(ctx, item)
                .map(|id| Applied::Done(Outcome::Created, id)),
            (Some(id), ConflictMode::Skip) => Ok(Applied::Done(Outcome::Skipped, id)),
            (Some(id), ConflictMode::Update) => self
                .update(ctx, id, &item.input)
                .map(|()| Applied::Done(Outcome::Updated, id)),
            (Some(old), ConflictMode::Replace) => {
                // The old product gives its provenance up first, as a replace
                // does one step after the other.
                let key = key.expect("an existing record has provenance");
                self.provenance.insert(key, None);
                match self.create(ctx, item) {
                    Ok(id) => {
                        match self.row_of.get(&old) {
                            Some(&row) if self.rows[row].new => self.rows[row].provenance = None,
                            _ => self.cleared.push(old),
                        }
                        Ok(Applied::Done(Outcome::Replaced, id))
                    }
                    Err(e) => {
                        self.provenance.insert(key, Some(old));
                        Err(e)
                    }
                }
            }
            (Some(id), ConflictMode::Error) => Ok(Applied::Collision(id)),
        };
        result.unwrap_or_else(Applied::Failed)
    }

    fn create(
        &mut self,
        ctx: &WriteContext<'_>,
        item: &'a Item<'a, ProductInput>,
    ) -> Result<Uuid, RecordError> {
        let id = new_id();
        let input = &item.input;
        let parts = self.resolve_parts(ctx, id, input)?;
        self.ensure_skus_free(id, input)?;
        let variant_ids: Vec<Uuid> = input.variants.iter().map(|_| new_id()).collect();
        self.take_skus(id, input, &variant_ids);
        if let Some(p) = item.provenance {
            self.provenance.insert((p.source, p.external_id), Some(id));
        }
        self.row_of.insert(id, self.rows.len());
        self.rows.push(Row {
            id,
            input,
            provenance: item.provenance,
            new: true,
            parts,
            variant_ids,
        });
        Ok(id)
    }

    /// Replaces the product's fields, components and variants; the old
    /// variants go before the sku check, so a payload keeping a variant's sku
    /// does not collide with the variant it replaces.
    fn update(
        &mut self,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &'a ProductInput,
    ) -> Result<(), RecordError> {
        let parts = self.resolve_parts(ctx, id, input)?;
        self.ensure_skus_free(id, input)?;
        for sku in self.held.remove(&id).unwrap_or_default() {
            self.skus.insert(sku, None);
        }
        let variant_ids: Vec<Uuid> = input.variants.iter().map(|_| new_id()).collect();
        self.take_skus(id, input, &variant_ids);
        match self.row_of.get(&id) {
            Some(&row) => {
                let row = &mut self.rows[row];
                row.input = input;
                row.parts = parts;
                row.variant_ids = variant_ids;
            }
            None => {
                self.row_of.insert(id, self.rows.len());
                self.rows.push(Row {
                    id,
                    input,
                    provenance: None,
                    new: false,
                    parts,
                    variant_ids,
                });
            }
        }
        Ok(())
    }

    /// Resolves the references of the product's parts and then of each
    /// variant's, in payload order: components against the products stored
    /// and those the batch wrote before this record, tier accounts and
    /// vendors against the accounts.
    fn resolve_parts(
        &self,
        ctx: &WriteContext<'_>,
        own_id: Uuid,
        input: &ProductInput,
    ) -> Result<Vec<ResolvedParts>, RecordError> {
        let variants = input
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("variants[{i}]."), &v.parts));
        std::iter::once((String::new(), &input.parts))
            .chain(variants)
            .map(|(at, parts)| self.resolve_one(ctx, own_id, &at, parts))
            .collect()
    }

    fn resolve_one(
        &self,
        ctx: &WriteContext<'_>,
        own_id: Uuid,
        at: &str,
        parts: &Parts,
    ) -> Result<ResolvedParts, RecordError> {
        let source = ctx.external_source.unwrap_or_default();
        let written = |external_id: &str| {
            self.provenance
                .get(&(source, external_id))
                .map(|id| id.map(|id| (id, true)))
        };
        let mut components = Vec::with_capacity(parts.components.len());
        for (i, c) in parts.components.iter().enumerate() {
            let (id, _) = self.components.resolve(
                ctx,
                "product",
                &format!("{at}components[{i}]"),
                &c.product,
                written,
            )?;
            components.push((id, c.quantity));
        }
        if let Some(i) = components.iter().position(|(id, _)| *id == own_id) {
            return Err(RecordError::at(
                "invalid_component",
                format!("{at}components[{i}]"),
                "a product cannot be a component of itself",
            ));
        }
        let mut tier_accounts = Vec::with_capacity(parts.pricing.len());
        for (i, tier) in parts.pricing.iter().enumerate() {
            let account = match &tier.account {
                Some(account) => {
                    let at = format!("{at}pricing[{i}]");
                    Some(
                        self.accounts
                            .resolve(ctx, "account", &at, account, |_| None)?
                            .0,
                    )
                }
                None => None,
            };
            tier_accounts.push(account);
        }
        let mut vendors = Vec::with_capacity(parts.vendors.len());
        for (i, v) in parts.vendors.iter().enumerate() {
            let at = format!("{at}vendors[{i}]");
            vendors.push(vendor_of(ctx, &self.accounts, &at, &v.vendor)?);
        }
        Ok(ResolvedParts {
            components,
            tier_accounts,
            vendors,
        })
    }

    /// Fails with `duplicate_sku`, naming the field, when a sku of the payload
    /// is used twice in it or by another product of the entity. The product's
    /// own skus and its variants' are free for it: an update replaces them.
    fn ensure_skus_free(&self, own_id: Uuid, input: &ProductInput) -> Result<(), RecordError> {
        let wanted = wanted_skus(input);
        let mut seen = HashSet::new();
        for (param, sku) in &wanted {
            if !seen.insert(*sku) {
                return Err(RecordError::at(
                    DUPLICATE_SKU,
                    param.clone(),
                    format!("sku '{sku}' appears more than once in this product"),
                )
                .conflicting());
            }
        }
        for (param, sku) in wanted {
            if let Some(Some(holder)) = self.skus.get(sku)
                && holder.product != own_id
            {
                return Err(RecordError::at(
                    DUPLICATE_SKU,
                    param,
                    format!(
                        "sku '{sku}' is already used by another product ({})",
                        holder.row
                    ),
                )
                .conflicting());
            }
        }
        Ok(())
    }

    fn take_skus(&mut self, id: Uuid, input: &ProductInput, variant_ids: &[Uuid]) {
        let rows = std::iter::once((id, input.sku.as_ref())).chain(
            variant_ids
                .iter()
                .zip(&input.variants)
                .map(|(row, v)| (*row, v.sku.as_ref())),
        );
        for (row, sku) in rows {
            if let Some(sku) = sku {
                self.skus
                    .insert(sku.clone(), Some(Holder { row, product: id }));
                self.held.entry(id).or_default().push(sku.clone());
            }
        }
    }

    /// Writes what the batch decided: each kind of change in one statement,
    /// in an order no record of the batch could have seen differently.
    async fn write(self, conn: &mut PgConnection, tenant: Tenant) -> Result<(), sqlx::Error> {
        if !self.cleared.is_empty() {
            sqlx::query(
                "update products set external_source = null, external_id = null, updated_at = now()
                 where id = any($1)",
            )
            .bind(&self.cleared)
            .execute(&mut *conn)
            .await?;
        }
        let (new, updated): (Vec<&Row<'_>>, Vec<&Row<'_>>) =
            self.rows.iter().partition(|row| row.new);
        if !updated.is_empty() {
            let ids: Vec<Uuid> = updated.iter().map(|r| r.id).collect();
            // A variant's parts go with it.
            for parts in ["product_components", "product_pricing", "product_vendors"] {
                sqlx::query(&format!("delete from {parts} where product_id = any($1)"))
                    .bind(&ids)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query("delete from products where parent_product_id = any($1)")
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "update products p
                 set title = u.title, product_type = u.product_type, sku = u.sku,
                     description = u.description, list_price = u.list_price, cost = u.cost,
                     updated_at = now()
                 from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::numeric[], $7::numeric[])
                     as u (id, title, product_type, sku, description, list_price, cost)
                 where p.id = u.id and p.id = any($1)",
            )
            .bind(&ids)
            .bind(
                updated
                    .iter()
                    .map(|r| r.input.title.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                updated
                    .iter()
                    .map(|r| r.input.product_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                updated
                    .iter()
                    .map(|r| r.input.sku.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                updated
                    .iter()
                    .map(|r| r.input.description.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                updated
                    .iter()
                    .map(|r| r.input.list_price)
                    .collect::<Vec<_>>(),
            )
            .bind(updated.iter().map(|r| r.input.cost).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let mut inserts = Inserts::default();
        for row in &new {
            inserts.push(row.id, row.input, row.provenance);
        }
        for row in &self.rows {
            for (id, v) in row.variant_ids.iter().zip(&row.input.variants) {
                inserts.push_variant(*id, v, row.id);
            }
        }
        inserts.execute(conn, tenant).await?;
        write_parts(conn, &self.rows).await
    }
}

/// Writes the components, price tiers and vendors of `rows` and of their
/// variants, each kind in one statement.
async fn write_parts(conn: &mut PgConnection, rows: &[Row<'_>]) -> Result<(), sqlx::Error> {
    // Each owner (a product, then its variants) with its parts as given and
    // as resolved.
    let owners: Vec<(Uuid, &Parts, &ResolvedParts)> = rows
        .iter()
        .flat_map(|row| {
            let given = std::iter::once(&row.input.parts)
                .chain(row.input.variants.iter().map(|v| &v.parts));
            std::iter::once(row.id)
                .chain(row.variant_ids.iter().copied())
                .zip(given)
                .zip(&row.parts)
                .map(|((owner, given), resolved)| (owner, given, resolved))
        })
        .collect();
    let components: Vec<(Uuid, i32, Uuid, Decimal)> = owners
        .iter()
        .flat_map(|(owner, _, resolved)| {
            (0..)
                .zip(&resolved.components)
                .map(|(position, (component, quantity))| (*owner, position, *component, *quantity))
        })
        .collect();
    if !components.is_empty() {
        sqlx::query(
            "insert into product_components
                (product_id, position, component_product_id, quantity)
             select * from unnest($1::uuid[], $2::int4[], $3::uuid[], $4::numeric[])",
        )
        .bind(column(&components, |c| c.0))
        .bind(column(&components, |c| c.1))
        .bind(column(&components, |c| c.2))
        .bind(column(&components, |c| c.3))
        .execute(&mut *conn)
        .await?;
    }
    let tiers: Vec<(Uuid, i32, &TierInput, Option<Uuid>)> = owners
        .iter()
        .flat_map(|(owner, given, resolved)| {
            (0..)
                .zip(given.pricing.iter().zip(&resolved.tier_accounts))
                .map(|(position, (tier, account))| (*owner, position, tier, *account))
        })
        .collect();
    if !tiers.is_empty() {
        sqlx::query(
            "insert into product_pricing
                (product_id, position, pricing_level_id, account_id, min_quantity, list_price,
                 sell_price)
             select * from unnest($1::uuid[], $2::int4[], $3::text[], $4::uuid[], $5::int4[],
                                  $6::numeric[], $7::numeric[])",
        )
        .bind(column(&tiers, |t| t.0))
        .bind(column(&tiers, |t| t.1))
        .bind(column(&tiers, |t| t.2.pricing_level_id.as_deref()))
        .bind(column(&tiers, |t| t.3))
        .bind(column(&tiers, |t| t.2.min_quantity))
        .bind(column(&tiers, |t| t.2.list_price))
        .bind(column(&tiers, |t| t.2.sell_price))
        .execute(&mut *conn)
        .await?;
    }
    let vendors: Vec<(Uuid, i32, &VendorInput, Uuid)> = owners
        .iter()
        .flat_map(|(owner, given, resolved)| {
            (0..)
                .zip(given.vendors.iter().zip(&resolved.vendors))
                .map(|(position, (vendor, id))| (*owner, position, vendor, *id))
        })
        .collect();
    if !vendors.is_empty() {
        sqlx::query(
            "insert into product_vendors
                (product_id, position, vendor_id, vendor_sku, default_unit_cost)
             select * from unnest($1::uuid[], $2::int4[], $3::uuid[], $4::text[],
                                  $5::numeric[])",
        )
        .bind(column(&vendors, |v| v.0))
        .bind(column(&vendors, |v| v.1))
        .bind(column(&vendors, |v| v.3))
        .bind(column(&vendors, |v| v.2.vendor_sku.as_deref()))
        .bind(column(&vendors, |v| v.2.default_unit_cost))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The skus a payload asks for, with the field each is given in.
fn wanted_skus(input: &ProductInput) -> Vec<(String, &str)> {
    let mut wanted: Vec<(String, &str)> = Vec::new();
    if let Some(sku) = &input.sku {
        wanted.push(("sku".to_owned(), sku));
    }
    for (i, v) in input.variants.iter().enumerate() {
        if let Some(sku) = &v.sku {
            wanted.push((format!("variants[{i}].sku"), sku));
        }
    }
    wanted
}

/// New product rows, as the columns of one `insert ... select from unnest`.
#[derive(Default)]
struct Inserts<'a> {
    ids: Vec<Uuid>,
    titles: Vec<&'a str>,
    types: Vec<&'static str>,
    skus: Vec<Option<&'a str>>,
    descriptions: Vec<Option<&'a str>>,
    list_prices: Vec<Option<Decimal>>,
    costs: Vec<Option<Decimal>>,
    parents: Vec<Option<Uuid>>,
    sources: Vec<Option<&'a str>>,
    external_ids: Vec<Option<&'a str>>,
}

impl<'a> Inserts<'a> {
    fn push(&mut self, id: Uuid, input: &'a ProductInput, provenance: Option<Provenance<'a>>) {
        self.ids.push(id);
        self.titles.push(&input.title);
        self.types.push(input.product_type.as_str());
        self.skus.push(input.sku.as_deref());
        self.descriptions.push(input.description.as_deref());
        self.list_prices.push(input.list_price);
        self.costs.push(input.cost);
        self.parents.push(None);
        self.sources.push(provenance.map(|p| p.source));
        self.external_ids.push(provenance.map(|p| p.external_id));
    }

    fn push_variant(&mut self, id: Uuid, variant: &'a VariantInput, parent: Uuid) {
        self.ids.push(id);
        self.titles.push(&variant.title);
        self.types.push(variant.product_type.as_str());
        self.skus.push(variant.sku.as_deref());
        self.descriptions.push(None);
        self.list_prices.push(None);
        self.costs.push(None);
        self.parents.push(Some(parent));
        self.sources.push(None);
        self.external_ids.push(None);
    }

    async fn execute(self, conn: &mut PgConnection, tenant: Tenant) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into products
                (id, entity_id, mode, title, product_type, sku, description, list_price, cost,
                 parent_product_id, external_source, external_id)
             select u.id, $1, $2, u.title, u.product_type, u.sku, u.description, u.list_price,
                    u.cost, u.parent, u.source, u.external_id
             from unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::numeric[], $9::numeric[], $10::uuid[], $11::text[], $12::text[])
                 as u (id, title, product_type, sku, description, list_price, cost, parent,
                       source, external_id)",
        )
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .bind(&self.ids)
        .bind(&self.titles)
        .bind(&self.types)
        .bind(&self.skus)
        .bind(&self.descriptions)
        .bind(&self.list_prices)
        .bind(&self.costs)
        .bind(&self.parents)
        .bind(&self.sources)
        .bind(&self.external_ids)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The record errors behind the constraints a batch of one can break: a
/// concurrent writer between our checks and our write, or an update removing
/// variants another product has as components.
fn constraint_error(err: &sqlx::Error) -> Option<RecordError> {
    match violated_constraint(err) {
        Some("products_sku_key") => Some(
            RecordError::at(
                DUPLICATE_SKU,
                "sku",
                "a sku of this product is already used by another product",
            )
            .conflicting(),
        ),
        Some("product_components_component_product_id_fkey") => Some(
            RecordError::new(
                "product_in_use",
                "a product this change removes is a component of another product",
            )
            .conflicting(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fields::INVALID;

    #[test]
    fn a_minimal_product_parses() {
        let p = ProductInput::parse(&json!({"title": "Mug", "product_type": "physical"}))
            .expect("valid");
        assert_eq!(p.title, "Mug");
        assert_eq!(p.product_type, ProductType::Physical);
        assert!(p.parts.components.is_empty() && p.variants.is_empty());
    }

    #[test]
    fn errors_name_the_nested_field() {
        let err = ProductInput::parse(&json!({
            "title": "Gift set", "product_type": "kit",
            "components": [{"product_external_id": "A", "quantity": 1},
                           {"product_external_id": "B", "quantity": 0}]
        }))
        .expect_err("zero quantity");
        assert_eq!(err.code, INVALID);
        assert_eq!(err.param.as_deref(), Some("components[1].quantity"));
    }

    #[test]
    fn components_need_exactly_one_reference() {
        let err = ProductInput::parse(&json!({
            "title": "Gift set", "product_type": "box",
            "components": [{"product_external_id": "A", "product_id": "0190d0c4-0000-7000-8000-000000000000", "quantity": 1}]
        }))
        .expect_err("two references");
        assert_eq!(err.param.as_deref(), Some("components[0].product_id"));
    }

    #[test]
    fn parts_belong_to_their_product_types() {
        let err = ProductInput::parse(&json!({
            "title": "Mug", "product_type": "physical",
            "components": [{"product_external_id": "A", "quantity": 1}]
        }))
        .expect_err("components on a physical product");
        assert_eq!(err.code, "components_not_allowed");
        let err = ProductInput::parse(&json!({
            "title": "Mug", "product_type": "kit",
            "variants": [{"title": "Red", "product_type": "physical"}]
        }))
        .expect_err("variants on a kit");
        assert_eq!(err.code, "variants_not_allowed");
    }

    #[test]
    fn product_type_is_checked() {
        let err = ProductInput::parse(&json!({"title": "Mug", "product_type": "gadget"}))
            .expect_err("unknown type");
        assert_eq!(err.param.as_deref(), Some("product_type"));
        assert!(err.message.contains("variant_parent"), "{}", err.message);
    }

    #[test]
    fn a_variant_is_never_a_variant_parent_and_has_components_only_as_a_kit() {
        let err = ProductInput::parse(&json!({
            "title": "Shirt", "product_type": "variant_parent",
            "variants": [{"title": "Shirt S", "product_type": "variant_parent"}]
        }))
        .expect_err("a variant parent variant");
        assert_eq!(err.param.as_deref(), Some("variants[0].product_type"));
        assert!(
            err.message.contains("physical, service, kit, box"),
            "{}",
            err.message
        );
        let err = ProductInput::parse(&json!({
            "title": "Shirt", "product_type": "variant_parent",
            "variants": [{"title": "Shirt S", "product_type": "physical",
                          "components": [{"product_external_id": "P-1", "quantity": 1}]}]
        }))
        .expect_err("components of a physical variant");
        assert_eq!(err.code, "components_not_allowed");
        assert_eq!(err.param.as_deref(), Some("variants[0].components"));
    }

    #[test]
    fn a_price_tier_is_for_a_level_or_an_account_once_per_quantity() {
        let tiers = |pricing: Value| {
            ProductInput::parse(&json!({
                "title": "Stone", "product_type": "physical", "pricing": pricing
            }))
        };
        let err = tiers(json!([{"min_quantity": 1, "list_price": 5}])).expect_err("neither");
        assert_eq!(err.param.as_deref(), Some("pricing[0]"));
        let err = tiers(json!([{"pricing_level_id": "retail", "account_external_id": "C-1"}]))
            .expect_err("both");
        assert_eq!(err.param.as_deref(), Some("pricing[0].pricing_level_id"));
        let err = tiers(json!([
            {"pricing_level_id": "retail", "list_price": 5},
            {"pricing_level_id": "wholesale", "list_price": 4},
            {"pricing_level_id": "retail", "min_quantity": 1, "list_price": 3},
        ]))
        .expect_err("two tiers from 1 on one level");
        assert_eq!(err.code, "duplicate_min_quantity");
        assert_eq!(err.param.as_deref(), Some("pricing[2].min_quantity"));
    }
}
