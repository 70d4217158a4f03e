"""Traffic control: one admission path for every upstream request — retries and their
budget, the circuit breaker, the upstream's window, rate limits (local or in Redis), the
concurrency queue — and the metrics read from their counters."""
