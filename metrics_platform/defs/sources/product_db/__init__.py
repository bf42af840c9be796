"""Row counts of the product's own database tables (users, profiles, API keys...)."""
