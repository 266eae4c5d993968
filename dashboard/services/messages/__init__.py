"""Messages in: API ingest, intake, test emails, the log and resend; never imports operations."""
