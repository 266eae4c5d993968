"""Billable work: configuration interventions and removals, invoicing; imports only core."""
