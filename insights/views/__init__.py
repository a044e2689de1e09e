"""The insights pages: imports and the event map, assumptions through time, digests, Customers."""
