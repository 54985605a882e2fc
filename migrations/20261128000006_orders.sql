-- Sales and purchase documents with their lines; totals are computed on write.

create table orders (
    id uuid primary key,
    entity_id uuid not null references entities (id),
    mode text not null check (mode in ('test', 'live')),
    order_number text not null,
    document_type text not null
        check (document_type in ('quote', 'sales_order', 'invoice', 'return', 'purchase_order')),
    account_id uuid not null references accounts (id),
    order_date date not null,
    notes text,
    subtotal numeric(19, 4) not null,
    order_total numeric(19, 4) not null,
    balance_due numeric(19, 4) not null,
    external_source text,
    external_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint orders_number_key unique (entity_id, mode, order_number),
    constraint orders_provenance_key unique (entity_id, mode, external_source, external_id),
    constraint orders_provenance_pair check ((external_source is null) = (external_id is null))
);

create index orders_account_idx on orders (account_id);

create table order_lines (
    order_id uuid not null references orders (id) on delete cascade,
    position integer not null,
    product_id uuid not null references products (id),
    quantity integer not null check (quantity >= 1),
    sell_rate numeric(19, 4) not null,
    line_total numeric(19, 4) not null,
    primary key (order_id, position)
);

create index order_lines_product_idx on order_lines (product_id);
