"""``twilio-callbacks bench``: a fixed, seeded workload through the local pipeline, measured and priced.

`workload` builds the callbacks, `run` drives them through `LocalPipeline`
while `measure` counts every AWS request and times every handler, `results`
turns that into figures and usage per million callbacks, `cost` prices it
(and the original design, from the same run), `tuning` prices the options,
and `report` writes ``bench-results.json`` and prints the tables.
"""
