-- What the vendor's creating-products-kits-variants guide sends with a
-- product, and each of its variants, that was dropped: price tiers and
-- vendors. (A variant may now be a kit or box with its own components,
-- which product_components already holds for any product row.)
create table product_pricing (
    product_id uuid not null references products (id) on delete cascade,
    position integer not null,
    -- The ERP's pricing level, as given: pricing levels are not loaded
    -- through this service.
    pricing_level_id text,
    account_id uuid references accounts (id),
    min_quantity integer not null check (min_quantity >= 1),
    list_price numeric(19, 4) check (list_price >= 0),
    sell_price numeric(19, 4) check (sell_price >= 0),
    primary key (product_id, position),
    check ((pricing_level_id is null) <> (account_id is null))
);

create index product_pricing_account_idx on product_pricing (account_id)
    where account_id is not null;

create table product_vendors (
    product_id uuid not null references products (id) on delete cascade,
    position integer not null,
    vendor_id uuid not null references accounts (id),
    vendor_sku text,
    default_unit_cost numeric(19, 4) check (default_unit_cost >= 0),
    primary key (product_id, position)
);

create index product_vendors_vendor_idx on product_vendors (vendor_id);
