//! Products: the canonical create and update handlers and their rules.
//!
//! Rules: `title` and `product_type` are required; `sku`, when given, is unique
//! per entity and mode (variants included); `components` belong to kits and
//! boxes only and reference other products of the entity by id or by external
//! id from the same source; `variants` belong to variant parents only and are
//! stored as products of their own that live and die with their parent.

use std::collections::HashSet;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{HandlerError, RecordError, violated_constraint};
use crate::fields::Fields;
use crate::import::{Canonical, Provenance, WriteContext};
use crate::refs::{self, RefField, parse_ref};
use crate::{Tenant, new_id};

const TITLE_MAX: usize = 255;
const SKU_MAX: usize = 100;
const DESCRIPTION_MAX: usize = 10_000;
/// Components or variants one product may list.
const PARTS_MAX: usize = 500;

pub const DUPLICATE_SKU: &str = "duplicate_sku";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductType {
    Physical,
    Service,
    Kit,
    Box,
    VariantParent,
}

const PRODUCT_TYPES: [&str; 5] = ["physical", "service", "kit", "box", "variant_parent"];
const VARIANT_TYPES: [&str; 2] = ["physical", "service"];

impl ProductType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductType::Physical => "physical",
            ProductType::Service => "service",
            ProductType::Kit => "kit",
            ProductType::Box => "box",
            ProductType::VariantParent => "variant_parent",
        }
    }

    fn has_components(self) -> bool {
        matches!(self, ProductType::Kit | ProductType::Box)
    }
}

impl FromStr for ProductType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "physical" => Ok(ProductType::Physical),
            "service" => Ok(ProductType::Service),
            "kit" => Ok(ProductType::Kit),
            "box" => Ok(ProductType::Box),
            "variant_parent" => Ok(ProductType::VariantParent),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentInput {
    /// `product_id` or `product_external_id`.
    pub product: RefField,
    pub quantity: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariantInput {
    pub title: String,
    pub sku: Option<String>,
    pub product_type: ProductType,
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
    pub components: Vec<ComponentInput>,
    pub variants: Vec<VariantInput>,
}

impl ProductInput {
    /// Checks every rule that needs no database. Fields this service does not
    /// keep are ignored, so exports from other systems load as they are.
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::of(record, "record")?;
        let title = f.required_string("title", TITLE_MAX)?;
        let product_type: ProductType = f.required_enum("product_type", &PRODUCT_TYPES)?;
        let sku = f.optional_string("sku", SKU_MAX)?;
        let description = f.optional_string("description", DESCRIPTION_MAX)?;
        let list_price = f.optional_money("list_price")?;
        let cost = f.optional_money("cost")?;

        let components = f.parse_items("components", PARTS_MAX, parse_component)?;
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
        let variants = f.parse_items("variants", PARTS_MAX, parse_variant)?;
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
            components,
            variants,
        })
    }
}

fn parse_component(f: &Fields<'_>) -> Result<ComponentInput, RecordError> {
    Ok(ComponentInput {
        product: parse_ref(f, "product", true)?.expect("a required reference is present"),
        quantity: f.required_positive("quantity")?,
    })
}

fn parse_variant(f: &Fields<'_>) -> Result<VariantInput, RecordError> {
    Ok(VariantInput {
        title: f.required_string("title", TITLE_MAX)?,
        sku: f.optional_string("sku", SKU_MAX)?,
        product_type: f.required_enum("product_type", &VARIANT_TYPES)?,
    })
}

/// The product resource, as the import loop sees it.
pub struct Products;

impl Canonical for Products {
    type Input = ProductInput;
    const TABLE: &'static str = "products";

    fn parse(record: &Value) -> Result<ProductInput, RecordError> {
        ProductInput::parse(record)
    }

    async fn create(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        provenance: Option<Provenance<'_>>,
        input: &ProductInput,
    ) -> Result<Uuid, HandlerError> {
        create(conn, ctx, provenance, input).await
    }

    async fn update(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &ProductInput,
    ) -> Result<(), HandlerError> {
        update(conn, ctx, id, input).await
    }
}

/// Creates a product, its components and its variants.
pub async fn create(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    provenance: Option<Provenance<'_>>,
    input: &ProductInput,
) -> Result<Uuid, HandlerError> {
    let id = new_id();
    let components = resolve_components(conn, ctx, id, &input.components).await?;
    ensure_skus_free(conn, ctx.tenant, id, input).await?;
    sqlx::query(
        "insert into products
            (id, entity_id, mode, title, product_type, sku, description, list_price, cost,
             external_source, external_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(ctx.tenant.entity_id)
    .bind(ctx.tenant.mode.as_str())
    .bind(&input.title)
    .bind(input.product_type.as_str())
    .bind(&input.sku)
    .bind(&input.description)
    .bind(input.list_price)
    .bind(input.cost)
    .bind(provenance.map(|p| p.source))
    .bind(provenance.map(|p| p.external_id))
    .execute(&mut *conn)
    .await
    .map_err(map_constraint)?;
    insert_parts(conn, ctx.tenant, id, &components, &input.variants).await?;
    Ok(id)
}

/// Replaces a product's fields with the payload's, and its components and
/// variants as one unit. Provenance is left as it is.
pub async fn update(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    id: Uuid,
    input: &ProductInput,
) -> Result<(), HandlerError> {
    let components = resolve_components(conn, ctx, id, &input.components).await?;
    sqlx::query("delete from product_components where product_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    // The old variants go before the sku check so that a payload keeping a
    // variant's sku does not collide with the variant it replaces.
    sqlx::query("delete from products where parent_product_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(map_constraint)?;
    ensure_skus_free(conn, ctx.tenant, id, input).await?;
    let updated = sqlx::query(
        "update products
         set title = $4, product_type = $5, sku = $6, description = $7, list_price = $8,
             cost = $9, updated_at = now()
         where id = $1 and entity_id = $2 and mode = $3",
    )
    .bind(id)
    .bind(ctx.tenant.entity_id)
    .bind(ctx.tenant.mode.as_str())
    .bind(&input.title)
    .bind(input.product_type.as_str())
    .bind(&input.sku)
    .bind(&input.description)
    .bind(input.list_price)
    .bind(input.cost)
    .execute(&mut *conn)
    .await
    .map_err(map_constraint)?;
    if updated.rows_affected() == 0 {
        return Err(RecordError::new(
            refs::REFERENCE_NOT_FOUND,
            format!("no product with id {id}"),
        )
        .into());
    }
    insert_parts(conn, ctx.tenant, id, &components, &input.variants).await
}

/// Resolves the component references and returns `(component id, quantity)`
/// pairs in payload order.
async fn resolve_components(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    own_id: Uuid,
    components: &[ComponentInput],
) -> Result<Vec<(Uuid, Decimal)>, HandlerError> {
    let refs: Vec<(String, &RefField)> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("components[{i}]"), &c.product))
        .collect();
    let ids = refs::resolve(conn, ctx, "products", "product", &refs).await?;
    if let Some(i) = ids.iter().position(|id| *id == own_id) {
        return Err(RecordError::at(
            "invalid_component",
            format!("components[{i}]"),
            "a product cannot be a component of itself",
        )
        .into());
    }
    Ok(ids
        .into_iter()
        .zip(components.iter().map(|c| c.quantity))
        .collect())
}

/// Fails with `duplicate_sku`, naming the field, when a sku of the payload is
/// used twice in it or by another product of the entity.
async fn ensure_skus_free(
    conn: &mut PgConnection,
    tenant: Tenant,
    own_id: Uuid,
    input: &ProductInput,
) -> Result<(), HandlerError> {
    let mut wanted: Vec<(String, &str)> = Vec::new();
    if let Some(sku) = &input.sku {
        wanted.push(("sku".to_owned(), sku));
    }
    for (i, v) in input.variants.iter().enumerate() {
        if let Some(sku) = &v.sku {
            wanted.push((format!("variants[{i}].sku"), sku));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    for (param, sku) in &wanted {
        if !seen.insert(*sku) {
            return Err(RecordError::at(
                DUPLICATE_SKU,
                param.clone(),
                format!("sku '{sku}' appears more than once in this product"),
            )
            .into());
        }
    }
    let skus: Vec<&str> = wanted.iter().map(|(_, s)| *s).collect();
    let taken: Option<(String, Uuid)> = sqlx::query_as(
        "select sku, id from products
         where entity_id = $1 and mode = $2 and sku = any($3) and id <> $4
         limit 1",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(&skus)
    .bind(own_id)
    .fetch_optional(&mut *conn)
    .await?;
    match taken {
        None => Ok(()),
        Some((sku, other)) => {
            let param = wanted
                .iter()
                .find(|(_, s)| *s == sku)
                .map(|(p, _)| p.clone())
                .unwrap_or_else(|| "sku".to_owned());
            Err(RecordError::at(
                DUPLICATE_SKU,
                param,
                format!("sku '{sku}' is already used by another product ({other})"),
            )
            .into())
        }
    }
}

async fn insert_parts(
    conn: &mut PgConnection,
    tenant: Tenant,
    product_id: Uuid,
    components: &[(Uuid, Decimal)],
    variants: &[VariantInput],
) -> Result<(), HandlerError> {
    if !components.is_empty() {
        let positions: Vec<i32> = (0..).take(components.len()).collect();
        let ids: Vec<Uuid> = components.iter().map(|c| c.0).collect();
        let quantities: Vec<Decimal> = components.iter().map(|c| c.1).collect();
        sqlx::query(
            "insert into product_components (product_id, position, component_product_id, quantity)
             select $1, * from unnest($2::int4[], $3::uuid[], $4::numeric[])",
        )
        .bind(product_id)
        .bind(&positions)
        .bind(&ids)
        .bind(&quantities)
        .execute(&mut *conn)
        .await
        .map_err(map_constraint)?;
    }
    if !variants.is_empty() {
        let ids: Vec<Uuid> = variants.iter().map(|_| new_id()).collect();
        let titles: Vec<&str> = variants.iter().map(|v| v.title.as_str()).collect();
        let skus: Vec<Option<&str>> = variants.iter().map(|v| v.sku.as_deref()).collect();
        let types: Vec<&str> = variants.iter().map(|v| v.product_type.as_str()).collect();
        sqlx::query(
            "insert into products (id, entity_id, mode, title, sku, product_type, parent_product_id)
             select v.id, $1, $2, v.title, v.sku, v.product_type, $3
             from unnest($4::uuid[], $5::text[], $6::text[], $7::text[])
                 as v (id, title, sku, product_type)",
        )
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .bind(product_id)
        .bind(&ids)
        .bind(&titles)
        .bind(&skus)
        .bind(&types)
        .execute(&mut *conn)
        .await
        .map_err(map_constraint)?;
    }
    Ok(())
}

/// Maps the constraints a concurrent writer can break between our checks and
/// our write to the codes the checks would have given.
fn map_constraint(err: sqlx::Error) -> HandlerError {
    match violated_constraint(&err) {
        Some("products_sku_key") => RecordError::at(
            DUPLICATE_SKU,
            "sku",
            "a sku of this product is already used by another product",
        )
        .into(),
        Some("product_components_component_product_id_fkey") => RecordError::new(
            "product_in_use",
            "a product this change removes is a component of another product",
        )
        .into(),
        _ => HandlerError::Database(err),
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
        assert!(p.components.is_empty() && p.variants.is_empty());
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
}
