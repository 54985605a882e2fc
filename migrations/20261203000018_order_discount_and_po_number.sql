-- What the vendor's creating-orders guide sends with an order that was
-- dropped: the customer's purchase order number and a header-level discount
-- ("percentage or flat"), which now comes off the order's total.
alter table orders
    add column po_number text,
    add column discount_type text check (discount_type in ('percentage', 'flat', 'amount')),
    add column discount_value numeric(19, 4) check (discount_value >= 0),
    add column discount_total numeric(19, 4) not null default 0 check (discount_total >= 0);
