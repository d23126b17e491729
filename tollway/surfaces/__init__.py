"""Public API dialects. Each surface parses its dialect, hands a canonical call to the pipeline
and renders the answer back, errors and SSE framing included. Surfaces hold no policy."""
