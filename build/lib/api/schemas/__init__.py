"""Request and response schemas of the REST API (pydantic v2, unknown fields rejected)."""
