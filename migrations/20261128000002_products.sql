-- Products and kit/box components. Every row belongs to one entity and one mode
-- (test or live), and test rows never meet live rows.

create table products (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    title text not null,
    product_type text not null
        check (product_type in ('physical', 'service', 'kit', 'box', 'variant_parent')),
    sku text,
    description text,
    list_price numeric(19, 4),
    cost numeric(19, 4),
    -- Set on the variants of a variant_parent; they live and die with it.
    parent_product_id uuid references products (id) on delete cascade,
    -- Provenance: where the record came from. Replace mode sets both to null on
    -- the old record, and nulls never collide in a unique constraint.
    external_source text,
    external_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint products_provenance_key unique (entity_id, mode, external_source, external_id),
    constraint products_provenance_pair check ((external_source is null) = (external_id is null))
);

create unique index products_sku_key on products (entity_id, mode, sku) where sku is not null;
create index products_parent_idx on products (parent_product_id) where parent_product_id is not null;

create table product_components (
    product_id uuid not null references products (id) on delete cascade,
    position integer not null,
    component_product_id uuid not null references products (id),
    quantity numeric(19, 4) not null check (quantity > 0),
    primary key (product_id, position)
);

create index product_components_component_idx on product_components (component_product_id);
