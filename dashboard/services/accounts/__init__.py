"""Staff users, customers and their settings, the Settings page; imported by no other service."""
