"""The worker's /metrics with its stage processes' metrics summed in."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import albums_assembled_total, merged_exposition

CHILD = """# HELP albums_parsed_total albums.parsed events by outcome
# TYPE albums_parsed_total counter
albums_parsed_total{status="valid"} 7.0
albums_parsed_total{status="invalid"} 1.0
# HELP albums_assembled_total album.assembled events emitted
# TYPE albums_assembled_total counter
albums_assembled_total{status="complete"} 5.0
# HELP sink_batch_size albums per sink batch
# TYPE sink_batch_size histogram
sink_batch_size_bucket{le="10.0",sink="s3"} 2.0
sink_batch_size_bucket{le="+Inf",sink="s3"} 3.0
sink_batch_size_count{sink="s3"} 3.0
sink_batch_size_sum{sink="s3"} 40.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.0e+09
"""


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def test_children_counters_and_histograms_are_added_to_this_processes() -> None:
    before = _samples(merged_exposition([]))
    complete = ("albums_assembled_total", (("status", "complete"),))
    albums_assembled_total.labels(status="complete").inc(2)
    merged = _samples(merged_exposition([CHILD, CHILD]))
    assert merged[complete] == before.get(complete, 0.0) + 2 + 2 * 5
    assert merged["albums_parsed_total", (("status", "valid"),)] >= 14
    assert merged["sink_batch_size_count", (("sink", "s3"),)] >= 6
    assert merged["sink_batch_size_bucket", (("le", "+Inf"), ("sink", "s3"))] >= 6


def test_each_process_keeps_its_own_process_metrics() -> None:
    own = _samples(merged_exposition([]))[("process_resident_memory_bytes", ())]
    merged = _samples(merged_exposition([CHILD]))[("process_resident_memory_bytes", ())]
    assert own < 1.0e09
    assert merged < 1.0e09  # the child's 1 GB is not added to this process's
    assert "_created" not in merged_exposition([CHILD]).decode()
