"""Prometheus metrics of one server (its own registry: several apps in one process do not collide)."""

from __future__ import annotations

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("xlembed_requests", "HTTP requests to /v1/embeddings by model and status code",
                                ["model", "status"], registry=r)
        self.latency = Histogram("xlembed_request_seconds", "Time from request to response, /v1/embeddings",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.inputs = Counter("xlembed_inputs", "Inputs embedded", ["model"], registry=r)
        self.tokens = Counter("xlembed_tokens", "Tokens embedded (after truncation, prompt and special tokens "
                              "included)", ["model"], registry=r)
        self.batch_size = Histogram("xlembed_batch_size", "Inputs per forward pass", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("xlembed_batch_seconds", "Time of one forward pass", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.batch_failures = Counter("xlembed_batch_failures", "Forward passes that raised", ["model"], registry=r)
        self.queue_depth = Gauge("xlembed_queue_depth", "Inputs waiting for the model", ["model"], registry=r)
        self.languages = Counter("xlembed_inputs_by_language", "Inputs by detected language (of the sample each "
                                 "request is checked on) and whether the model was trained on it (yes/no)",
                                 ["model", "language", "trained_on"], registry=r)
        self.rejected = Counter("xlembed_rejected", "Requests refused with 429 (queue full)", ["model"], registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
