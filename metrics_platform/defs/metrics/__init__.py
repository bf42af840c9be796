"""The derived metric tables: hourly values from every raw source, and daily rollups."""
