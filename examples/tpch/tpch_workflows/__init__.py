"""TPC-H example workflows for Klaw: sources, joins, aggregates and a data-quality gate."""
