-- What the vendor's creating-accounts-with-addresses guide sends with an
-- account that was dropped: its display name, tags and contacts, and each
-- address's label.
alter table accounts
    add column display_name text,
    add column tags text[] not null default '{}';

alter table account_addresses add column label text;

create table account_contacts (
    account_id uuid not null references accounts (id) on delete cascade,
    position integer not null,
    first_name text,
    last_name text,
    email text,
    phone text,
    -- The guide's `role`.
    title text,
    is_primary boolean not null default false,
    primary key (account_id, position)
);
