CREATE TABLE orders (id serial PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers (id),
                     placed_at timestamptz NOT NULL DEFAULT now());
