"""Parses Prometheus text from stdin with the reference parser (prometheus_client)
and prints the families as JSON: {name: {"type": ..., "samples": [[name, labels, value]]}}.
A parse error exits non-zero with the parser's message."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    out[fam.name] = {
        "type": fam.type,
        "samples": [[s.name, s.labels, s.value] for s in fam.samples],
    }
json.dump(out, sys.stdout)
