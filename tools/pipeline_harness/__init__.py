"""Acting as Twilio, and checking what landed: the test and load harness.

`scenarios` builds realistic, seeded callback lifecycles and signs them as
Twilio does; `sender` posts them over HTTP; `reconcile` reads every sink back
and compares it with what was sent; `faults` injects AWS errors into the local
pipeline's traffic. Used by ``twilio-callbacks send`` and ``verify``, the
load, reliability and end-to-end tests, and the benchmark.
"""
