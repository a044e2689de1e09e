"""Customer-data workflows, one module each: `imports` (event files into the plan's data),
`retests` (assumptions measured against it, on demand and on schedule) and `digests` (the
e-mails after a scheduled re-test)."""
