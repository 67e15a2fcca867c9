-- The `tpch_sql` workflow. Each statement is a stage named by the `-- name:` line before it
-- and stored as an asset. A table is an asset of `tpch` (its latest snapshot) or a statement
-- of this file; params are bound as `$name`, never formatted into the text.

-- name: pricing_summary
-- TPC-H Q1: quantities, prices and discounts per return flag and line status of the lines
-- shipped up to $ship_cutoff_days days before 1998-12-01.
SELECT return_flag,
       line_status,
       sum(quantity) AS sum_qty,
       sum(extended_price) AS sum_base_price,
       sum(net_revenue) AS sum_disc_price,
       sum(net_revenue * (1 + tax)) AS sum_charge,
       avg(quantity) AS avg_qty,
       avg(extended_price) AS avg_price,
       avg(discount) AS avg_disc,
       count(*) AS count_order
FROM lineitem_clean
WHERE ship_date <= DATE '1998-12-01' - CAST($ship_cutoff_days AS INTEGER)
GROUP BY return_flag, line_status
ORDER BY return_flag, line_status;

-- name: local_supplier_volume
-- TPC-H Q5 for every region and year: revenue of the lines whose customer and supplier are
-- in the same nation, per region, nation and order year; at least $min_revenue.
SELECT o.region,
       o.nation,
       year(o.order_date) AS order_year,
       sum(o.net_revenue) AS revenue,
       count(DISTINCT o.order_key) AS orders,
       count(*) AS lines
FROM order_lines AS o
JOIN suppliers AS s ON s.supplier_key = o.supplier_key
JOIN nations AS sn ON sn.nation_key = s.nation_key
WHERE sn.nation = o.nation
GROUP BY ALL
HAVING sum(o.net_revenue) >= $min_revenue
ORDER BY o.region, order_year, revenue DESC;

-- name: region_volume
-- The local supplier volume per region and year, with the nation that contributes most
-- (reads the statement above).
SELECT region,
       order_year,
       round(sum(revenue), 2) AS revenue,
       count(*) AS nations,
       arg_max(nation, revenue) AS top_nation,
       round(max(revenue) / sum(revenue), 4) AS top_nation_share
FROM local_supplier_volume
GROUP BY region, order_year
ORDER BY region, order_year;
