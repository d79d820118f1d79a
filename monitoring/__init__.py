"""Consumer-lag monitoring: sampling offsets and record times of every consumer group and
projection, judging each partition over a window, threshold rules, alerts and their sinks,
Prometheus metrics (docs/operations.md#lag). Arrows point down: cli → monitoring →
consumers → backbone."""
