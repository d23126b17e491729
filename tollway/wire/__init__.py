"""Pure wire-format code: schemas, envelopes, SSE, translators. Imports nothing of ours."""
