"""The insights pages, one module a topic: `imports` (upload, column mapping, progress, the event
map), `assumptions` (an assumption's history, re-tests, the assumption map, the test preview),
`customers` (the Customers page, with its filters in `customer_filters` and its lifetime-value
panel in `customer_value`) and `digests` (one-click unsubscribe). insights/urls.py and
config/urls.py name the modules."""
