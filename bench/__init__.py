"""labledger's benchmark suite: the ledger against its HTTP, database and naive-stack bounds.

`python -m bench full` runs everything and writes bench/results/ and BENCHMARKS.md;
`python -m bench smoke` runs a seconds-long version that only checks the suite still works.
"""
