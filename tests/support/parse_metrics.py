"""Parses /metrics from stdin with the reference parser (prometheus_client) and
prints the families as JSON: {name: {"type": ..., "unit": ..., "samples": [[name, labels, value]]}}.
A parse error exits non-zero with the parser's message.

camhub serves OpenMetrics text (`# UNIT`, `# EOF`, counters typed without their
`_total`, an info family), so this uses prometheus_client's OpenMetrics parser,
which checks all of that; the classic text parser would skip `# EOF` and `# UNIT`
as comments and split each counter's `_total` samples off into untyped families."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    out[fam.name] = {
        "type": fam.type,
        "unit": fam.unit,
        "samples": [[s.name, s.labels, s.value] for s in fam.samples],
    }
json.dump(out, sys.stdout)
