"""`tasker bench`: benchmarks that start their own backend and load, print figures, and clean up.

One module per benchmark (`ingest`, `latency`, `history`, `tui`); `stack` starts backends over
fresh, isolated names in the real services; `loadgen` is the load generator process; `naive` the
naive pipeline the ingest benchmark compares against; `machine` reads CPU and machine facts.
Benchmarks print figures; they are not timed tests.
"""
