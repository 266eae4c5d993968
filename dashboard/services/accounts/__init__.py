"""Staff users, customers and their settings, the Settings page; never imports operations."""
