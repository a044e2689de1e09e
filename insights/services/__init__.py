"""Customer-data workflows, one module each: `imports` (event files into the plan's data),
`uploads` (what people do with an import: upload, start, retry), `retests` (assumptions
measured against the plan's data, on demand and on schedule) and `digests` (the e-mails after
a scheduled re-test)."""
