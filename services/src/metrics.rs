//! Prometheus metrics: commands by type and outcome, command latency, projection lag,
//! subscribers. Served on `/metrics` at the config's `metrics_listen`.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

pub const COMMANDS_TOTAL: &str = "stemma_commands_total";
pub const COMMAND_SECONDS: &str = "stemma_command_seconds";
pub const PROJECTION_LAG_EVENTS: &str = "stemma_projection_lag_events";
pub const SUBSCRIBERS: &str = "stemma_subscribers";

/// Starts the `/metrics` endpoint. Must run inside the tokio runtime.
pub fn install(listen: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(COMMAND_SECONDS.to_string()),
            &[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )
        .map_err(|error| error.to_string())?
        .install()
        .map_err(|error| error.to_string())
}

pub fn command_outcome(command_type: &'static str, outcome: Result<(), ()>, seconds: f64) {
    let outcome = if outcome.is_ok() {
        "accepted"
    } else {
        "refused"
    };
    metrics::counter!(COMMANDS_TOTAL, "type" => command_type, "outcome" => outcome).increment(1);
    metrics::histogram!(COMMAND_SECONDS, "type" => command_type).record(seconds);
}

pub fn projection_lag(projection: &'static str, lag_events: u64) {
    metrics::gauge!(PROJECTION_LAG_EVENTS, "projection" => projection).set(lag_events as f64);
}

pub fn subscribers(delta: f64) {
    metrics::gauge!(SUBSCRIBERS).increment(delta);
}
